"""Is this checkout installed, up to date, in the Python running this script? (stdlib only)

scripts/setup.sh runs it with the project virtualenv's interpreter (`.venv/bin/python -I`) to
decide whether to pip-install again. It asks the installed distribution, not `import webhook`
(which, from the repository root, imports the source tree whether or not anything is installed):

- `canary-judge` is installed, editable, from this checkout (a .venv moved or copied from
  another checkout would import that checkout's code);
- every requirement of it, with the `test` and `bench` extras, is installed;
- pyproject.toml is the one it was installed from: its SHA-256 is in the stamp file that
  setup.sh writes after a successful install (a new dependency means a new install).

Exit 0 when all hold; otherwise exit 1 and print why on one line. `--write-stamp` records the
current pyproject.toml after an install.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

DIST = "canary-judge"
EXTRAS = ("test", "bench")


def pyproject_hash(root: Path) -> str:
    return hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()


def _wanted(requirement: str) -> str | None:
    """The distribution name of a requirement we need (no extra, or one of EXTRAS), else None."""
    name, _, marker = requirement.partition(";")
    extras = re.findall(r"""extra\s*==\s*["']([^"']+)["']""", marker)
    if extras and not set(extras) & set(EXTRAS):
        return None
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", name)
    return match.group(1) if match else None


def problem(root: Path, stamp: Path) -> str | None:
    """Why the installation in this interpreter is not usable for `root`, or None if it is."""
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return f"{DIST} is not installed"
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    where = Path(unquote(urlsplit(direct.get("url", "")).path)) if direct.get("url") else None
    if not direct.get("dir_info", {}).get("editable") or where is None:
        return f"{DIST} is installed, but not editable from a checkout"
    if where.resolve() != root.resolve():
        return f"{DIST} is installed from {where}, not from {root}"
    for requirement in dist.requires or []:
        name = _wanted(requirement)
        if name is None:
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return f"{name} (a dependency of {DIST}) is not installed"
    if not stamp.is_file():
        return "no record of the pyproject.toml it was installed from"
    if stamp.read_text().strip() != pyproject_hash(root):
        return "pyproject.toml changed since the last install"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the checkout")
    parser.add_argument("--stamp", type=Path, required=True,
                        help="file holding the SHA-256 of the installed pyproject.toml")
    parser.add_argument("--write-stamp", action="store_true")
    args = parser.parse_args(argv)
    if args.write_stamp:
        args.stamp.write_text(pyproject_hash(args.root) + "\n")
        return 0
    why = problem(args.root, args.stamp)
    print(why or "up to date")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main())
