#!/usr/bin/env bash
# The demo: a real Prometheus with a planted rollout, the judge serving under gunicorn, and
# curl showing one pass and one fail (Argo) plus Flagger's rollback hook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m webhook.lab.demo "$@"
