"""What the README and docs/*.md show is what the shipped files and the service do.

A newcomer copies the YAML shown in the README into a cluster, and an operator reads the API
table to build a report URL by hand: an example that drifted from the file it names, or a query
parameter the table leaves out, costs them a rollout. So every YAML block that names a file of
`analysis_templates/` must be an excerpt of that file (each key it shows, with the value it
shows), and the GET route's row must name every query parameter the service accepts.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
FILE = re.compile(r"analysis_templates/[\w-]+/[\w-]+\.yaml")


def named_yaml_blocks() -> list[tuple[str, str, str]]:
    """(doc, file, block) for each ```yaml block whose first line, or the paragraph right
    before it, names a file of analysis_templates/ (the last one named, if several)."""
    out = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            block = match.group(1)
            before = text[:match.start()].rstrip("\n").rsplit("\n\n", 1)[-1]
            names = FILE.findall(block.split("\n", 1)[0]) or FILE.findall(before)
            if names:
                out.append((doc, names[-1], block))
    return out


def missing(shown: Any, real: Any, path: str = "") -> list[str]:
    """What `shown` has that `real` lacks: mappings key by key, list items by `name` (or as a
    whole), scalars by equality."""
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return [f"{path or '.'}: the file has no mapping here"]
        return [problem for key, value in shown.items()
                for problem in ([f"{path}.{key}: not in the file"] if key not in real
                                else missing(value, real[key], f"{path}.{key}"))]
    if isinstance(shown, list):
        if not isinstance(real, list):
            return [f"{path}: the file has no list here"]
        problems = []
        for i, item in enumerate(shown):
            if isinstance(item, dict) and "name" in item:
                same = [r for r in real if isinstance(r, dict) and r.get("name") == item["name"]]
                problems += (missing(item, same[0], f"{path}[{item['name']}]") if same
                             else [f"{path}[{item['name']}]: no item of that name in the file"])
            elif not any(not missing(item, r) for r in real):
                problems.append(f"{path}[{i}]: {item!r} is not in the file")
        return problems
    return [] if shown == real else [f"{path}: shows {shown!r}, the file has {real!r}"]


def closest(shown: Any, documents: list[Any]) -> list[str]:
    """The fewest problems of `shown` read as an excerpt at any mapping of the file: a block
    may begin at `spec:`, `analysis:` or a web provider's body."""
    nodes: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            nodes.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            nodes.append(node)
            for value in node:
                walk(value)

    for document in documents:
        walk(document)
    return min((missing(shown, node) for node in nodes), key=len)


BLOCKS = named_yaml_blocks()


def test_the_examples_that_must_be_excerpts_are_found():
    """The README's Argo and Flagger examples and the profiles' worked examples are checked
    (a change of the wording before a block must not quietly drop it from the check)."""
    checked = {(doc, file) for doc, file, _ in BLOCKS}
    for config in ("http", "trading", "healthcare"):
        assert ("README.md", f"analysis_templates/{config}/analysis-template.yaml") in checked
        assert ("README.md", f"analysis_templates/{config}/flagger-canary.yaml") in checked
    for config in ("trading", "healthcare"):
        assert ("docs/profiles.md", f"analysis_templates/{config}/analysis-template.yaml") \
            in checked
        assert ("docs/profiles.md", f"analysis_templates/{config}/flagger-canary.yaml") \
            in checked


@pytest.mark.parametrize(("doc", "file", "block"), BLOCKS,
                         ids=[f"{d}:{f}:{i}" for i, (d, f, _) in enumerate(BLOCKS)])
def test_a_yaml_example_naming_a_shipped_file_is_an_excerpt_of_it(doc, file, block):
    shown = yaml.safe_load(block)
    documents = list(yaml.safe_load_all((ROOT / file).read_text()))
    assert closest(shown, documents) == [], f"{doc}'s example drifted from {file}"


def _get_row() -> str:
    readme = (ROOT / "README.md").read_text()
    return next(line for line in readme.splitlines()
                if line.startswith("| `GET /v1/analyze/<config>`"))


def test_the_readme_names_every_query_parameter_the_get_route_accepts(client):
    """The service names what it accepts when it refuses an unknown parameter; the README's
    row must name each (an operator building a report URL by hand reads the row)."""
    answer = client.get("/v1/analyze/http?canary.app=a&stable.app=b&colour=red")
    assert answer.status_code == 400
    accepted = answer.json["message"].split("; use ", 1)[1].replace(" (JSON)", "").split(", ")
    assert "format" in accepted and "start" in accepted, answer.json
    shown = set(re.findall(r"`([a-z_.<>]+)", _get_row()))
    assert [p for p in accepted if p not in shown] == []


def test_every_query_parameter_the_readme_names_is_accepted(client):
    """And no parameter in the row is one the service refuses as unknown."""
    names = re.findall(r"`([a-z_]+)`", _get_row().split("|")[2])
    assert len(names) >= 10, names
    for name in names:
        answer = client.get(f"/v1/analyze/http?canary.app=a&stable.app=b&{name}=x")
        assert "unknown query parameter" not in answer.get_data(as_text=True), name


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_a_section_of_the_docs_lands_on_a_heading():
    """A person sent to `docs/kubernetes.md#alerts` from an alert or the README must find the
    section: a renamed heading would leave the link at the top of a long page."""
    anchors = {doc: {_slug(h) for h in re.findall(r"^#+ (.+)$", (ROOT / doc).read_text(), re.M)}
               for doc in DOCS}
    links = []
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\(([\w./-]*)#([\w-]+)\)", (ROOT / doc).read_text()):
            path = (ROOT / doc).parent / target if target else ROOT / doc
            links.append((doc, str(path.resolve().relative_to(ROOT)), anchor))
    assert ("README.md", "docs/kubernetes.md", "why-did-a-rollout-stop") in links
    assert [link for link in links if link[2] not in anchors[link[1]]] == []


def test_the_readme_command_line_shows_every_option_of_the_cli():
    """The README's usage is what an operator at a terminal reads first: each option the CLI
    takes is in it (an option missing there is one nobody finds), and it shows none the CLI
    would refuse."""
    from webhook.cli import build_parser

    section = (ROOT / "README.md").read_text().split("\n## Command line\n", 1)[1]
    usage = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    # each command's part of the usage: from `canary-judge <name>` to the next command
    parts = re.split(r"canary-judge (\w+)", usage)
    shown = {name: set(re.findall(r"--[a-z-]+", text))
             for name, text in zip(parts[1::2], parts[2::2], strict=True)}
    subparsers = next(a for a in build_parser()._actions
                      if isinstance(a, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        options = {flag for action in command._actions for flag in action.option_strings
                   if flag.startswith("--") and flag != "--help"}
        assert options - shown[name] == set(), f"canary-judge {name}: left out of the README"
        assert shown[name] - options == set(), f"canary-judge {name}: the README's, unknown"


def test_install_steps_create_the_tokens_secret_before_the_pods_start():
    """The Deployment reads canary-judge-secrets into its environment (optional: true), which
    a pod reads only when it starts: a Secret created after `kubectl apply -k` leaves the
    running judge without its API tokens, open to anyone, until it is restarted."""
    deployment = (ROOT / "manifests/base/deployment.yaml").read_text()
    assert "name: canary-judge-secrets" in deployment and "optional: true" in deployment
    seen = 0
    for doc in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", (ROOT / doc).read_text(), re.S):
            lines = block.splitlines()
            secret = [i for i, line in enumerate(lines) if "secret generic canary-judge-secrets"
                      in line]
            applied = [i for i, line in enumerate(lines) if re.search(r"kubectl apply -k", line)]
            if secret and applied:
                seen += 1
                assert secret[0] < applied[0], f"{doc}: {block}"
    assert seen >= 1  # the README's install


def test_the_readme_layout_names_every_module_of_the_package():
    """README's Development layout is a newcomer's map of webhook/: a module missing from it
    is one they do not know exists (each top-level module and subpackage, by name)."""
    readme = (ROOT / "README.md").read_text().split("\n## Development\n", 1)[1]
    layout = readme.split("```", 2)[1]
    named = set(re.findall(r"[\w-]+(?:\.py|/)", layout))
    package = ROOT / "webhook"
    modules = {p.name for p in package.glob("*.py") if not p.name.startswith("__")}
    packages = {p.name + "/" for p in package.iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert len(modules) > 20 and len(packages) > 5
    assert sorted((modules | packages) - named) == []


def test_every_value_the_docs_show_for_a_locked_var_is_one_the_service_takes(client):
    """An example that sets a locked var (`requests_metric: myapp_requests_total`) to a value
    its lock refuses is a 403 to whoever copies it into a template: each example of a locked
    var in the docs, the templates' and configs' comments must be one the service accepts."""
    texts = {path: path.read_text() for path in [
        *(ROOT / doc for doc in DOCS), *(ROOT / "analysis_templates").rglob("*.yaml"),
        *(ROOT / "webhook" / "configs").glob("*.yaml"), *(ROOT / "manifests").rglob("*.yaml")]}
    checked = 0
    for config in ("http", "trading", "healthcare"):
        locked = client.get(f"/v1/configs/{config}").json["locks"]["vars"]
        for var in locked:
            for path, text in texts.items():
                # not `vars.<var>: …`: a field named in an error message the docs quote
                for value in re.findall(rf"(?<![\w.]){var}[\"']?\s*[:=]\s*[\"']?([A-Za-z_][\w.]*)",
                                        text):
                    answer = client.post("/v1/analyze", json={
                        "config": config, "canary": {"app": "a"}, "stable": {"app": "b"},
                        "vars": {var: value}, "window": {"lookback": "5m"}})
                    assert answer.status_code != 403, (path.relative_to(ROOT), var, value,
                                                       answer.json)
                    checked += 1
    assert checked >= 5
