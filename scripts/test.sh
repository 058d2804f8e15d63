#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite: lint, types, Python tests, browser-client tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-test-system-packages
.venv/bin/ruff check gateway tests bench
.venv/bin/mypy
if [ -d tests/js ] && ls tests/js/*.test.mjs >/dev/null 2>&1; then
  node --test tests/js/
fi
.venv/bin/python -m pytest "$@"
