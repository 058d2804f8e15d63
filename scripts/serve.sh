#!/usr/bin/env bash
# Sets everything up, then runs the gateway on its embedded defaults (127.0.0.1:8080, no exporter:
# finished sessions are kept in memory and summarised in the log). Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/voice-trace-gateway serve "$@"
