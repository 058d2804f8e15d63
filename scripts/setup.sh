#!/usr/bin/env bash
# Sets up everything the gateway and its tests need on a fresh Debian machine with Python 3.11+:
# a virtualenv in .venv with the package and its test tools, and the Debian packages the tests drive.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ "${1:-}" = "--with-test-system-packages" ]; then
  missing=()
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # Call recordings' browser test: a spoken WAV for the fake microphone, and ffmpeg/ffprobe to decode what was stored.
  command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
  command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
      exit 1
    fi
  fi
fi

# The providers' official client SDKs the tests drive (tests/js/package.json, exact versions, locked).
if [ "${1:-}" = "--with-test-system-packages" ] && [ -f tests/js/package-lock.json ]; then
  npm_stamp=tests/js/node_modules/.installed-$(sha256sum tests/js/package-lock.json | cut -c1-16)
  if [ ! -f "$npm_stamp" ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
    touch "$npm_stamp"
  fi
fi
