#!/usr/bin/env bash
# The demo: a real Prometheus with a planted rollout, the judge serving under gunicorn, and
# curl showing one pass and one fail (Argo) plus Flagger's rollback hook. Installs what is
# missing first (scripts/setup.sh) and runs with the project virtualenv .venv's Python.
# Arguments go to the demo (--keep: leave both servers running until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> python -m webhook.lab.demo${*:+ $*} (with $PWD/.venv/bin/python)"
exec "$PWD/.venv/bin/python" -m webhook.lab.demo "$@"
