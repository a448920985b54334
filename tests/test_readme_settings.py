"""The README's settings table says what the code does: an operator copies a default from it.

Each documented default is checked by behaviour, not by reading the code's literal: setting the
variable to the value the README calls its default must leave the loaded settings (pydantic) and
gunicorn's configuration exactly as they are with the variable unset. And every `CANARY_JUDGE_*`
variable the service reads must have a row.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import pytest

from webhook import shared_dir, worker_boot
from webhook.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "CANARY_JUDGE_"
# Set by the gunicorn master for its workers, never by an operator.
INTERNAL = {shared_dir.DIR_ENV, worker_boot.DIR_ENV, worker_boot.EXPECTED_ENV}
# Defaults the code computes (from the pod's CPUs and memory, from TMPDIR): the README says how.
COMPUTED = {PREFIX + "WORKERS", PREFIX + "WORKER_TMP_DIR"}


def documented() -> dict[str, str | None]:
    """Variable -> its default as the README's Configuration table writes it: the backticked
    value, "" for an empty cell, None for a default given in words (computed by the code)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `" + PREFIX) or len(cells) < 3:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        # `CANARY_JUDGE_PROMETHEUS_USERNAME`, `…_PASSWORD`: the second shares the first's stem.
        stem = names[0].rsplit("_", 1)[0]
        names = [stem + n[1:] if n.startswith("…") else n for n in names]
        parts = cells[1].split(";") if ";" in cells[1] else cells[1].split(",")
        if len(names) == 1 or not cells[1]:
            parts = [cells[1]] * len(names)
        assert len(parts) == len(names), f"README row {cells[0]}: one default per variable"
        for name, part in zip(names, parts, strict=True):
            value = re.fullmatch(r"\s*`([^`]*)`\s*", part)
            rows[name] = value.group(1) if value else ("" if not part.strip() else None)
    return rows


def read_by_code() -> set[str]:
    """Every CANARY_JUDGE_* variable the service reads: the settings' fields, and the names
    the package's modules read from the environment themselves (gunicorn_conf, capacity, …)."""
    names = {PREFIX + field.upper() for field in Settings.model_fields}
    for path in (ROOT / "webhook").rglob("*.py"):
        names |= set(re.findall(r"[\"'](" + PREFIX + r"[A-Z0-9_]+)[\"']", path.read_text()))
    return names - INTERNAL


def gunicorn_conf() -> dict[str, object]:
    """gunicorn's settings as webhook/gunicorn_conf.py computes them from the environment now."""
    spec = importlib.util.spec_from_file_location("_conf", ROOT / "webhook" / "gunicorn_conf.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and not callable(v) and not isinstance(v, ModuleType)}


def test_readme_settings_table_matches_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = documented()
    assert len(rows) > 30, "the README's settings table was not found"
    missing = read_by_code() - set(rows)
    assert not missing, f"read by the code, not in README's settings table: {sorted(missing)}"
    unknown = set(rows) - read_by_code()
    assert not unknown, f"in README's settings table, read by no code: {sorted(unknown)}"

    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    defaults, conf = load_settings().model_dump(), gunicorn_conf()
    wrong = {}
    for name, value in sorted(rows.items()):
        if value is None:  # a default in words
            assert name in COMPUTED, f"{name}: README gives no literal default"
            continue
        if value == "":
            field = name.removeprefix(PREFIX).lower()
            if defaults.get(field) not in (None, [], {}, ""):
                wrong[name] = f"README: no default; code: {defaults[field]!r}"
            continue
        monkeypatch.setenv(name, value)
        try:
            changed = {k for k, v in load_settings().model_dump().items() if defaults[k] != v}
            changed |= {k for k, v in gunicorn_conf().items() if conf.get(k) != v}
        finally:
            monkeypatch.delenv(name)
        if changed:
            wrong[name] = f"README default `{value}` changes {sorted(changed)}"
    assert not wrong, f"README's settings table disagrees with the code: {wrong}"
