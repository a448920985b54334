#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh: Debian's prometheus, the project
# virtualenv .venv), then lints and runs the whole suite with .venv's Python against a real
# Prometheus (started by the tests themselves on a free loopback port). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VPY="$PWD/.venv/bin/python"
echo "==> ruff check webhook tests bench (with $VPY)"
"$VPY" -m ruff check webhook tests bench
echo "==> pytest -q${*:+ $*} (with $VPY)"
exec "$VPY" -m pytest -q "$@"
