#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine: Debian's prometheus
# (prometheus + promtool) and this package with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "==> installing Debian's prometheus (prometheus + promtool)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The report page's browser test (tests/test_report_page.py) runs Debian's headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium (headless, for the report page's browser test)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import webhook, pytest, hypothesis, jsonschema, matplotlib, websocket" >/dev/null 2>&1 \
   || [ "${CANARY_JUDGE_REINSTALL:-}" = "1" ] || [ -n "${CI:-}" ]; then
  echo "==> installing canary-judge and its test dependencies"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
fi
