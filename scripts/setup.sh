#!/usr/bin/env bash
# Installs what the demo and the tests need, and nothing into the system's Python:
# - Debian's prometheus package (prometheus + promtool) and chromium (the report page's browser
#   test), when missing;
# - the project virtualenv .venv (git-ignored) with this checkout installed editable, with its
#   test and bench extras. PYTHON (default python3) is only used to create .venv.
# Safe to run again: it reinstalls only when .venv's own metadata says canary-judge, one of its
# dependencies, or the pyproject.toml it was installed from is missing or different
# (scripts/installed.py). CANARY_JUDGE_REINSTALL=1 forces a reinstall.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/.venv"
STAMP="$VENV/canary-judge-pyproject.sha256"
PYTHON="${PYTHON:-python3}"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "==> installing Debian's prometheus (prometheus + promtool) with apt-get"
  apt_install prometheus
fi

# The report page's browser test (tests/test_report_page.py) runs Debian's headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium (headless, for the report page's browser test) with apt-get"
  apt_install chromium
fi

# A venv whose interpreter is gone (e.g. the python it was made from was removed) is rebuilt.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
  echo "==> $VENV is broken (its python does not run): recreating it"
  rm -rf "$VENV"
fi

if [ ! -e "$VENV" ]; then
  echo "==> creating the project virtualenv $VENV with $PYTHON"
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian/Ubuntu ship venv's ensurepip in a separate package.
    rm -rf "$VENV"
    ver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    pkgs="python3-venv"
    if apt-cache show "python$ver-venv" >/dev/null 2>&1; then pkgs="$pkgs python$ver-venv"; fi
    echo "==> '$PYTHON -m venv' failed: installing $pkgs with apt-get"
    apt_install $pkgs
    "$PYTHON" -m venv "$VENV"
  fi
fi

VPY="$VENV/bin/python"
echo "==> using the project virtualenv $VENV ($("$VPY" -c 'import sys; print("Python", sys.version.split()[0])')); nothing is installed into the system Python"

if [ "${CANARY_JUDGE_REINSTALL:-}" = "1" ]; then
  why="CANARY_JUDGE_REINSTALL=1"
else
  why="$("$VPY" -I scripts/installed.py --root "$ROOT" --stamp "$STAMP")" && why=""
fi
if [ -n "$why" ]; then
  echo "==> installing canary-judge (editable) and its test dependencies into $VENV ($why)"
  rm -f "$STAMP"
  "$VPY" -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
  "$VPY" -I scripts/installed.py --root "$ROOT" --stamp "$STAMP" --write-stamp
  if ! why="$("$VPY" -I scripts/installed.py --root "$ROOT" --stamp "$STAMP")"; then
    echo "error: installed, but $why" >&2
    exit 1
  fi
else
  echo "==> canary-judge and its test dependencies are already installed in $VENV"
fi
