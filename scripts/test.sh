#!/usr/bin/env bash
# The test command: installs what is missing, lints, then runs the whole suite against a real
# Prometheus (started by the tests themselves on a free loopback port).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m ruff check webhook tests bench
"$PYTHON" -m pytest -q "$@"
