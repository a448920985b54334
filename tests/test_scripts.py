"""The newcomer scripts: scripts/setup.sh installs into the project's .venv, and decides whether
to (re)install by asking the installed distribution (scripts/installed.py), not by importing
the source tree."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_PROJECT_VENV = Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()

_spec = importlib.util.spec_from_file_location("installed", ROOT / "scripts" / "installed.py")
assert _spec is not None and _spec.loader is not None
installed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(installed)

MISSING = "no-such-distribution-for-canary-judge-tests"


def fake_install(site: Path, root: Path, requires: list[str], editable: bool = True) -> None:
    """A canary-judge dist-info as pip writes it for `pip install -e root` (PEP 610)."""
    info = site / "canary_judge-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: canary-judge\nVersion: 0.1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    (info / "direct_url.json").write_text(json.dumps(
        {"url": root.as_uri(), "dir_info": {"editable": True} if editable else {}}))


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    """A checkout with a pyproject.toml, and a site directory searched before the real one."""
    root, site = tmp_path / "repo", tmp_path / "site"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "canary-judge"\n')
    monkeypatch.syspath_prepend(str(site))
    return root, site, tmp_path / "stamp"


def test_up_to_date_only_with_everything_from_this_checkout(checkout):
    root, site, stamp = checkout
    fake_install(site, root, ["numpy>=1.26", 'pytest>=8; extra == "test"',
                              f'{MISSING}; extra == "docs"'])  # an extra we do not install
    assert installed.problem(root, stamp) == \
        "no record of the pyproject.toml it was installed from"
    installed.main(["--root", str(root), "--stamp", str(stamp), "--write-stamp"])
    assert installed.problem(root, stamp) is None
    (root / "pyproject.toml").write_text('[project]\nname = "canary-judge"\n# new dep\n')
    assert installed.problem(root, stamp) == "pyproject.toml changed since the last install"


def test_a_missing_test_dependency_means_install(checkout):
    root, site, stamp = checkout
    fake_install(site, root, ["numpy", f'{MISSING}>=1; extra == "test"'])
    installed.main(["--root", str(root), "--stamp", str(stamp), "--write-stamp"])
    assert installed.problem(root, stamp) == f"{MISSING} (a dependency of canary-judge) is " \
                                             "not installed"


def test_an_install_from_another_checkout_or_not_editable_means_install(checkout, tmp_path):
    root, site, stamp = checkout
    fake_install(site, tmp_path / "elsewhere", ["numpy"])
    assert installed.problem(root, stamp) == (
        f"canary-judge is installed from {tmp_path / 'elsewhere'}, not from {root}")
    (site / "canary_judge-0.1.0.dist-info" / "direct_url.json").write_text(
        json.dumps({"url": root.as_uri(), "dir_info": {}}))
    assert installed.problem(root, stamp) == \
        "canary-judge is installed, but not editable from a checkout"


def test_no_installation_means_install(tmp_path):
    """Run as setup.sh runs it (isolated, so the repository root is not on sys.path), with an
    interpreter that has the source tree next to it but nothing installed for `tmp_path`."""
    (tmp_path / "pyproject.toml").write_text("")
    run = subprocess.run([sys.executable, "-I", str(ROOT / "scripts" / "installed.py"),
                          "--root", str(tmp_path), "--stamp", str(tmp_path / "stamp")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert run.returncode == 1
    assert run.stdout.startswith("canary-judge is"), run.stdout


@pytest.mark.skipif(not IN_PROJECT_VENV, reason="runs under `bash scripts/test.sh`, which "
                    "installs into the project's .venv")
def test_setup_finds_everything_installed_in_the_venv():
    env = {k: v for k, v in os.environ.items() if k != "CANARY_JUDGE_REINSTALL"}
    run = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"using the project virtualenv {ROOT / '.venv'}" in run.stdout
    assert "already installed in" in run.stdout and "installing" not in run.stdout
