"""The report page (`?format=html`): what the person on call sees when a rollout stops.

The browser tests load the page from the real server (gunicorn) in Debian's headless Chromium
against the lab Prometheus, for a planted passing, failing and inconclusive rollout, and keep
a screenshot and a PDF print of each in an artifact directory that the test prints.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from html import unescape as html_unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pytest
import requests

from tests.browser import chromium, chromium_path
from webhook.lab.judge import served_judge
from webhook.lab.rollouts import ARGO_MISSING, ARGO_STABLE, argo_hash

SVG_NS = "{http://www.w3.org/2000/svg}"
ROLLOUTS = {"pass": argo_hash("healthy"), "fail": argo_hash("errors3x"),
            "inconclusive": ARGO_MISSING}


def query(lab, canary_hash: str, **extra) -> str:
    w = lab.window(60)
    params = {"canary.rollouts_pod_template_hash": canary_hash,
              "stable.rollouts_pod_template_hash": ARGO_STABLE,
              "start": int(w["start"]), "end": int(w["end"]), "step": "60", **extra}
    return "/v1/analyze/http?" + urlencode(params)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    where = Path(os.environ.get("CANARY_JUDGE_ARTIFACTS")
                 or tempfile.mkdtemp(prefix="canary-judge-report-"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nreport page screenshots and prints: {where}")
    return where


@pytest.fixture(scope="module")
def judge_url(lab):
    with served_judge(lab.url) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.fail("chromium is not installed: bash scripts/setup.sh installs Debian's package")
    with chromium() as page:
        yield page


@pytest.mark.parametrize("expected", ["pass", "fail", "inconclusive"])
def test_report_page_in_headless_chromium(expected, lab, judge_url, browser, artifacts):
    answer = requests.get(judge_url + query(lab, ROLLOUTS[expected]), timeout=30).json()
    assert answer["verdict"] == expected, answer["reason"]

    browser.open(judge_url + answer["report"])
    dom = browser.evaluate("""(() => ({
        verdict: document.querySelector('#verdict').dataset.verdict,
        headline: document.querySelector('#verdict').textContent,
        reason: document.querySelector('#reason').textContent,
        figures: [...document.querySelectorAll('figure.check')].map(f => ({
            name: f.dataset.check, verdict: f.dataset.verdict,
            charts: f.querySelectorAll('svg').length,
            title: f.querySelector('svg > title')?.textContent || '',
            desc: f.querySelector('svg > desc')?.textContent || '',
            canary: f.querySelector('path.canary')?.getAttribute('d') || '',
            crossed: f.querySelectorAll('.crossed').length,
            failLine: f.querySelectorAll('.fail-line').length,
            width: f.querySelector('svg').getBoundingClientRect().width})),
        rows: document.querySelectorAll('table.checks-table tbody tr').length,
        scripts: document.scripts.length,
        external: [...document.querySelectorAll('[src], link[href]')].length,
    }))()""")
    assert dom["verdict"] == expected
    assert dom["headline"].startswith(expected.upper())
    assert dom["reason"] == answer["reason"]
    assert dom["scripts"] == 0 and dom["external"] == 0
    assert dom["rows"] == len(answer["checks"])
    # One chart per check, in the JSON's order and with its verdict.
    assert [(f["name"], f["verdict"]) for f in dom["figures"]] == [
        (c["name"], c["verdict"]) for c in answer["checks"]]
    for figure in dom["figures"]:
        assert figure["charts"] == 1, figure["name"]
        assert figure["title"].startswith(figure["name"]) and len(figure["desc"]) > 40
        assert figure["width"] > 500  # readable, not a thumbnail
    # restarts counts against a fixed allowance, traffic draws each side's requests per step
    # and saturation each side's CPU per request: no evidence, no 1/alpha line
    tested = [f for f in dom["figures"]
              if f["name"] not in ("restarts", "traffic", "saturation")]
    assert len(tested) == len(dom["figures"]) - 3
    for figure in tested:
        # sequential mode: every http test with data draws its evidence and the 1/alpha line
        assert figure["failLine"] == (expected != "inconclusive")
    figures = {f["name"]: f for f in dom["figures"]}
    if expected == "fail":
        ratio = figures["error_ratio"]
        assert ratio["crossed"] == 1, "the failing check shows where evidence crossed 1/alpha"
        assert "first reached at step" in ratio["desc"]
    if expected == "pass":
        assert all(f["crossed"] == 0 for f in dom["figures"])
        assert all(f["canary"].count("L") > 50 for f in tested)  # 60 steps drawn
    if expected == "inconclusive":
        assert all(f["canary"] == "" for f in tested)  # no canary data, no line
        assert all("Canary: no data" in f["desc"] for f in tested)
    assert browser.problems() == []

    browser.screenshot(artifacts / f"report-{expected}.png")
    browser.pdf(artifacts / f"report-{expected}.pdf")
    assert (artifacts / f"report-{expected}.png").stat().st_size > 20_000
    assert (artifacts / f"report-{expected}.pdf").read_bytes().startswith(b"%PDF")


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def test_charts_are_valid_svg_with_text_alternatives(client, lab):
    r = client.get(query(lab, ROLLOUTS["fail"], format="html"))
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    svgs = _svgs(html)
    # error ratio, p95, p99, the tail share, restarts, traffic, saturation
    assert len(svgs) == 7
    for n, svg in enumerate(svgs):
        assert svg.tag == SVG_NS + "svg" and svg.get("role") == "img"
        title, desc = svg.find(SVG_NS + "title"), svg.find(SVG_NS + "desc")
        assert title is not None and title.text and desc is not None and desc.text
        assert svg.get("aria-labelledby") == title.get("id")
        assert svg.get("aria-describedby") == desc.get("id")
        assert svg.find(f"{SVG_NS}path[@class='canary']") is not None
        assert svg.find(f"{SVG_NS}path[@class='stable']") is not None
        if n < 4 or n == 6:  # a tolerance band around the stable; restarts, traffic: none
            assert svg.find(f"{SVG_NS}polygon[@class='band']") is not None


def test_json_and_text_answers_link_to_the_report_with_the_end_pinned(client, lab):
    """A controller's poll names no end; the link must show that poll's decision later."""
    payload = {"config": "http", "canary": {"rollouts_pod_template_hash": ROLLOUTS["fail"]},
               "stable": {"rollouts_pod_template_hash": ARGO_STABLE}}
    answer = client.post("/v1/analyze", json=payload).json
    link = urlsplit(answer["report"])
    params = parse_qs(link.query)
    assert link.path == "/v1/analyze/http" and params["format"] == ["html"]
    assert "end" in params and "start" not in params  # the start is still found from the data
    page = client.get(answer["report"])
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert 'data-verdict="fail"' in text and answer["window"]["start"] in text
    plain = client.post("/v1/analyze?format=text", json=payload).get_data(as_text=True)
    assert re.search(r"^report:  /v1/analyze/http\?\S*format=html$", plain, flags=re.M)


def test_report_link_carries_per_request_overrides(client, lab):
    """+50 % latency passes only under the request's looser tolerances (quantiles and tail
    share): the page must judge with them too, not with the config's."""
    w = lab.window(60)
    payload = {"config": "http", "window": w, "mode": "fixed",
               "canary": {"rollouts_pod_template_hash": argo_hash("slow")},
               "stable": {"rollouts_pod_template_hash": ARGO_STABLE},
               "metrics": [{"name": "latency", "tolerance": {"relative": "1.0"},
                            "tail": {"tolerance": {"relative": 20, "absolute": 0.05}}}]}
    answer = client.post("/v1/analyze", json=payload).json
    assert answer["verdict"] == "pass", answer["reason"]
    again = client.get(answer["report"].replace("format=html", "format=json")).json
    assert again["verdict"] == "pass" and again["mode"] == "fixed"
    assert again["checks"] == answer["checks"]


def test_a_format_it_does_not_have_is_a_400_naming_it(client, lab):
    """`?format=txt` answered the JSON without a word, as if the parameter were not there;
    every other query parameter it does not know is a 400 naming it."""
    for url in (query(lab, ROLLOUTS["pass"], format="txt"), "/v1/analyze?format=htm"):
        r = (client.get(url) if url.startswith("/v1/analyze/") else
             client.post(url, json={"config": "http", "canary": "a=\"b\"", "stable": "a=\"c\""}))
        assert r.status_code == 400, r.get_data(as_text=True)[:200]
        assert r.json["field"] == "format"
        assert "use json, text, html" in r.json["message"]


def test_browser_accept_header_gets_html_and_curl_gets_json(client, lab):
    url = query(lab, ROLLOUTS["pass"])
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert client.get(url, headers={"Accept": browser_accept}).mimetype == "text/html"
    assert client.get(url, headers={"Accept": "*/*"}).mimetype == "application/json"
    assert client.get(url).mimetype == "application/json"


def test_evidence_over_the_line_is_drawn_as_a_failure_only_on_a_failed_check(client, lab):
    """A ratio check fails when its evidence reaches 1/alpha AND the observed difference is
    beyond the tolerance, so a passing check's evidence may still have reached the line; the
    chart drew "crossed at 08:14" on the fail line of such a passing check. Drawn from a
    failed check's own trace, marked as passing: reached, never crossed, "did not fail"."""
    from dataclasses import replace

    from webhook.judge import judge_ratio
    from webhook.report.svg import chart

    steps = 10
    failed = judge_ratio("latency_tail", np.full(steps, 30.0), np.full(steps, 1000.0),
                         np.full(steps, 4.0), np.full(steps, 1000.0), mode="sequential",
                         relative_tolerance=0.2)
    assert failed.verdict == "fail" and failed.trace is not None
    failed = replace(failed, trace=replace(failed.trace, canary=(0.03,) * steps,
                                           stable=(0.004,) * steps, first_time=1.8e9, step=60))
    as_passing = ET.fromstring(chart(replace(failed, verdict="pass"), "latency_tail"))
    texts = " ".join(t.text or "" for t in as_passing.iter(f"{SVG_NS}text"))
    assert as_passing.find(f"{SVG_NS}line[@class='reached']") is not None
    assert as_passing.find(f"{SVG_NS}line[@class='crossed']") is None
    assert "crossed at" not in texts
    assert "did not fail" in texts and "did not fail" in as_passing.find(f"{SVG_NS}desc").text
    as_failed = ET.fromstring(chart(failed, "latency_tail"))  # a failed check keeps its crossing
    assert as_failed.find(f"{SVG_NS}line[@class='crossed']") is not None
    assert "did not fail" not in as_failed.find(f"{SVG_NS}desc").text
    # In the lab: a 5-point tail tolerance passes the slow canary's 2.2 % vs 0.36 %; its
    # evidence is against the ratio that tolerance allows (x15), and stays below the line.
    metrics = json.dumps([{"name": "latency",
                           "tail": {"tolerance": {"relative": 0.2, "absolute": 0.05}}}])
    url = query(lab, argo_hash("slow"), metrics=metrics)
    checks = {c["name"]: c for c in client.get(url).json["checks"]}
    assert checks["latency_tail"]["verdict"] == "pass", checks["latency_tail"]["reason"]
    html = client.get(url + "&format=html").get_data(as_text=True)
    svgs = {s.get("id").split("-", 1)[1].removesuffix("-chart"): s for s in _svgs(html)}
    assert svgs["latency_tail"].find(f"{SVG_NS}line[@class='crossed']") is None


def test_the_fail_line_is_labelled_with_the_alpha_it_stands_for(client, lab):
    """A check that fails either way tests each direction at alpha/2: its line is at 40 for
    alpha 0.05, and the chart labelled that "1/α = 40"."""
    ratio = {"kind": "ratio", "tolerance": {"relative": 0.2, "absolute": 0.002},
             "bad": 'sum(increase(http_requests_total{ {{selector}}, code=~"5.." }[{{step}}]))',
             "total": "sum(increase(http_requests_total{ {{selector}} }[{{step}}]))"}
    metrics = json.dumps([{**ratio, "name": "errors_either", "direction": "either"},
                          {**ratio, "name": "errors_up", "direction": "increase"}])
    html = client.get(query(lab, ROLLOUTS["fail"], metrics=metrics, format="html"))
    svgs = {s.get("id").split("-", 1)[1].removesuffix("-chart"): s
            for s in _svgs(html.get_data(as_text=True))}
    for name, label, level in (("errors_either", "1/(α/2)", "40"), ("errors_up", "1/α", "20"),
                               ("latency_p95", "1/α", "20")):
        texts = [t.text for t in svgs[name].iter(f"{SVG_NS}text")]
        assert f"fail line {label} = {level}" in texts, (name, texts)
        desc = svgs[name].find(f"{SVG_NS}desc").text
        assert f"fail line {level} ({label.replace('α', 'alpha')})" in desc, desc


def test_a_quantile_chart_shows_the_buckets_its_values_are_interpolated_in(client, lab):
    """The p99 check is inconclusive because "both p99 lie in 400ms–500ms": the buckets
    cannot say where inside. Its chart drew 401.5ms vs 408.6ms per step as if measured; it
    must draw the bucket bounds the values lie between and say the values are interpolated."""
    url = query(lab, ROLLOUTS["fail"])
    answer = client.get(url).json
    p99 = next(c for c in answer["checks"] if c["name"] == "latency_p99")
    assert p99["verdict"] == "inconclusive"
    low, high = re.search(r"both p99 lie in (\S+)–(\S+):", p99["reason"]).groups()
    html = client.get(url + "&format=html").get_data(as_text=True)
    svg = next(s for s in _svgs(html) if s.get("id", "").endswith("latency_p99-chart"))
    texts = [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert f"bucket le {low}" in texts and f"bucket le {high}" in texts, texts
    assert len(svg.findall(f"{SVG_NS}line[@class='bucket-bound']")) >= 2
    assert any(t and t.startswith("p99") and "interpolated" in t for t in texts), texts
    desc = svg.find(f"{SVG_NS}desc").text
    assert "interpolated inside histogram buckets" in desc and low in desc and high in desc


def test_the_tail_share_chart_names_its_bound(client, lab):
    """The tail share's axis read "share of requests above the tail bound": which bound, the
    chart did not say (the JSON does: "share above 500ms"), and at 39 characters the label
    ran past its 190-pixel panel and was cut off."""
    url = query(lab, ROLLOUTS["fail"])
    tail = next(c for c in client.get(url).json["checks"] if c["name"] == "latency_tail")
    bound = re.match(r"share above (\S+):", tail["interval"]["of"]).group(1)
    html = client.get(url + "&format=html").get_data(as_text=True)
    svg = next(s for s in _svgs(html) if s.get("id", "").endswith("latency_tail-chart"))
    label = svg.find(f"{SVG_NS}text[@class='axis-label']").text
    assert label == f"share above {bound} per step"
    # 11px text is ~6.5px a character: the label fits beside the values' panel
    assert len(label) * 6.5 < 190
    assert f"share above {bound} per step from" in svg.find(f"{SVG_NS}desc").text


def test_the_table_says_what_each_interval_is_of(client, lab):
    """Next to an error ratio's effect of +200 % (relative) its interval reads 1.6% … 2.4%:
    that is canary - stable in points, as the JSON's `of` says, not the effect's interval.
    Each row names what its bounds are of and their level."""
    url = query(lab, ROLLOUTS["fail"])
    answer = client.get(url).json
    html = client.get(url + "&format=html").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-check="([^"]*)"[^>]*>(.*?)</tr>', html))
    assert set(rows) == {c["name"] for c in answer["checks"]}
    for check in answer["checks"]:
        interval = check["interval"]
        if not interval["of"]:  # restarts: a count against an allowance, no interval
            continue
        cell = re.findall(r"<td[^>]*>(.*?)</td>", rows[check["name"]])[7]
        assert f'{interval["of"]}, {interval["level"]:.0%}' in html_unescape(cell), cell
    assert answer["checks"][0]["interval"]["of"] == "canary - stable"


def test_checks_that_do_not_hold_the_verdict_say_so_as_the_json_does(client, lab):
    """The JSON marks the p99 its buckets cannot resolve `"blocking": false` (the tail share
    decides); the table and the text table showed an orange INCONCLUSIVE like any other, so
    the reader had to find "informational" deep in its reason."""
    url = query(lab, ROLLOUTS["fail"])
    answer = client.get(url).json
    html = client.get(url + "&format=html").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-check="([^"]*)"[^>]*>(.*?)</tr>', html))
    text = client.get(url + "&format=text").get_data(as_text=True).splitlines()
    assert any(not c["blocking"] for c in answer["checks"])
    for check in answer["checks"]:
        line = next(x for x in text if x.split()[:1] == [check["name"]])
        said = "(informational)" in rows[check["name"]], "(informational)" in line
        assert said == (not check["blocking"],) * 2, (check["name"], said)


@pytest.mark.parametrize("rollout", ["fail", "pass"])
def test_the_text_table_and_the_page_print_each_number_alike(client, lab, rollout):
    """One set of formatters for both tables (they were twins, one per module): a check's
    values, counts, effect and p-value read the same in a terminal and on the page, a
    missing one `-` there and `–` here."""
    url = query(lab, ROLLOUTS[rollout])
    answer = client.get(url).json
    html = client.get(url + "&format=html").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-check="([^"]*)"[^>]*>(.*?)</tr>', html))
    text = client.get(url + "&format=text").get_data(as_text=True).splitlines()
    for check in answer["checks"]:
        line = next(x for x in text if x.split()[:1] == [check["name"]])
        printed = re.split(r"\s{2,}", line)[2:8]  # canary … p, past the name and verdict
        cells = [html_unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                      rows[check["name"]])]
        shown = cells[2:7] + cells[8:9]  # canary … effect, then p (the interval between)
        assert [p.replace("-", "–") if p == "-" else p for p in printed] == shown, check["name"]


def test_no_cache_keeps_an_answer_or_mixes_up_its_formats(client, lab):
    """The same GET gives the page to a browser and the JSON to curl, and "up to now" gives
    a new verdict at every poll: a cache in between (an Ingress's, the browser's) must keep
    none of them, and must not answer curl with a page a browser got."""
    url = query(lab, ROLLOUTS["pass"])
    answers = [client.get(url, headers={"Accept": "text/html"}), client.get(url),
               client.get(url + "&step=never"),
               client.post("/v1/analyze", json={"config": "http", "canary": "a=\"b\"",
                                                "stable": "a=\"c\""})]
    assert [a.mimetype for a in answers[:2]] == ["text/html", "application/json"]
    for answer in answers:
        assert answer.headers["Cache-Control"] == "no-store", answer.headers
        assert "Accept" in answer.vary, answer.headers


def test_label_values_cannot_drive_the_on_calls_terminal(client, lab):
    """The text table goes to a terminal: a label value's escape sequences (ESC [2J clears the
    screen, CSI in its one-byte form, BEL) printed raw could wipe the verdict line and draw
    another. They are shown as \\xNN escapes, and the table's own lines stay the only ones."""
    nasty = "x\x1b[2J\x9b1A\x07verdict: PASS"
    r = client.get(query(lab, nasty, format="text"))
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text), repr(text)
    assert "x\\x1b[2J\\x9b1A\\x07verdict: PASS" in text
    assert text.startswith("verdict: INCONCLUSIVE")
    assert not any(line.startswith("verdict: PASS") for line in text.splitlines())


def test_label_values_cannot_inject_markup(client, lab):
    nasty = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    r = client.get(query(lab, nasty, format="html"))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<script" not in html and "<img" not in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    # the text and JSON answers carry the label value as sent: no browser may sniff them
    # into a page (a signed link opens them in one)
    for fmt, mimetype in (("text", "text/plain"), ("json", "application/json")):
        other = client.get(query(lab, nasty, format=fmt))
        assert other.mimetype == mimetype and "<script>" in other.get_data(as_text=True)
        assert other.headers["X-Content-Type-Options"] == "nosniff"
    for svg in _svgs(html):  # still well-formed
        assert svg.tag == SVG_NS + "svg"


def test_json_answer_stays_small_and_carries_no_per_step_data(client, lab):
    r = client.get(query(lab, ROLLOUTS["fail"]))
    assert r.mimetype == "application/json"
    assert len(r.data) < 6000, len(r.data)
    assert "trace" not in r.get_data(as_text=True)


def test_flagger_hook_answer_links_to_the_same_decision(client):
    """Flagger puts a failed webhook's answer in the Canary's events: the link there must
    reopen that decision."""
    from webhook.lab.rollouts import NAMESPACE, SCHEME_VARS

    payload = {"name": "badinfo", "namespace": NAMESPACE, "phase": "Progressing",
               "metadata": {"provider": "app", "lookback": "60m", **SCHEME_VARS["app"]}}
    r = client.post("/v1/hooks/rollout", json=payload)
    assert r.status_code == 412
    line = r.get_data(as_text=True)
    match = re.search(r", report (/v1/analyze/\S+)\]$", line.strip())
    assert match, line
    page = client.get(match.group(1))
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'id="verdict" data-verdict="fail"' in page.get_data(as_text=True)


def test_traced_evidence_is_the_evidence_the_verdict_used():
    """The chart's evidence line must end where the judge's p-value says (p = 1/M)."""
    import math

    import numpy as np

    from webhook.judge import judge_quantile, judge_ratio
    from webhook.judge.histogram import Histogram

    rng = np.random.default_rng(3)
    n = np.full(30, 1200.0)
    bad_c, bad_s = rng.binomial(1200, 0.02, 30), rng.binomial(1200, 0.01, 30)
    check = judge_ratio("e", bad_c, n, bad_s, n, relative_tolerance=0.2, mode="sequential")
    assert check.verdict == "fail" and check.trace is not None
    assert len(check.trace.evidence) == 30
    assert math.exp(-check.trace.evidence[-1]) == pytest.approx(check.p_value, rel=1e-9)
    assert check.trace.crossed is not None and check.trace.crossed < 29

    bounds = [*np.arange(0.2, 4.01, 0.2).tolist(), math.inf]
    def buckets(scale):
        counts = np.array([rng.multinomial(1200, np.diff([0, *[min(1, b / (2 * scale))
                                                           for b in bounds[:-1]], 1]))
                           for _ in range(30)])
        return [(b, np.cumsum(counts, axis=1)[:, i].astype(float)) for i, b in enumerate(bounds)]
    q = judge_quantile("p", Histogram.from_steps(buckets(1.6)), Histogram.from_steps(buckets(1.0)),
                       0.9, relative_tolerance=0.2, mode="sequential")
    assert q.trace is not None and len(q.trace.evidence) == 30
    assert math.exp(-max(q.trace.evidence)) == pytest.approx(q.p_value, rel=1e-9)
    assert q.verdict == "fail" and q.trace.crossed is not None


def test_cohort_checks_are_grouped_by_cohort():
    from webhook.judge.types import CheckResult, Summary, Trace
    from webhook.report.page import report_html

    def check(name, cohort):
        return CheckResult(name=name, kind="ratio", verdict="pass", test="t", reason=name,
                           canary=Summary(10, 0.1), stable=Summary(10, 0.1), cohort=cohort,
                           group="workflows", trace=Trace(canary=(0.1, 0.2), stable=(0.1, 0.1),
                                                          first_time=0, step=60))
    checks = [check("w[facility=A]", "A"), check("w[facility=B]", "B"), check("x", ""),
              check("y[facility=A]", "A")]
    body = {"verdict": "pass", "score": 100, "reason": "r", "config": "c", "mode": "fixed",
            "window": {"start": "s", "end": "e", "step": 60}, "analysis_id": "id"}
    html = report_html(body, checks)
    order = [m.group(1) for m in re.finditer(r'<h3 class="cohort">cohort (\w)</h3>', html)]
    assert order == ["A", "B"]
    charts = html[html.index("<section"):]
    a, b = charts.index("cohort A</h3>"), charts.index("cohort B</h3>")
    assert charts.index('data-check="x"') < a < charts.index('data-check="y[facility=A]"') < b
    assert len(_svgs(html)) == 4


def test_overwhelming_evidence_is_drawn_not_overflowed():
    """Hours of a 3x error rate give evidence past 1e308, beyond a float."""
    from webhook.judge.types import CheckResult, Summary, Trace
    from webhook.report.svg import chart

    trace = Trace(canary=(0.03,) * 3, stable=(0.01,) * 3, evidence=(10.0, 900.0, 2000.0),
                  evidence_level=math.log(20), first_time=0, step=60)
    check = CheckResult(name="e", kind="ratio", verdict="fail", test="t", reason="r",
                        canary=Summary(1, 0.03), stable=Summary(1, 0.01), trace=trace)
    svg = ET.fromstring(chart(check, "x"))
    text = ET.tostring(svg, encoding="unicode")
    assert "peak 1e+868" in text and "crossed at" in text
    assert "peaked at 1e+868" in svg.find(SVG_NS + "desc").text


@pytest.mark.parametrize("seed", range(10))
def test_any_numbers_give_a_well_formed_chart(seed):
    """Corrupt series reach the page too (the verdict says inconclusive): the chart must still
    be valid SVG, whatever the values."""
    import numpy as np

    from webhook.judge.types import CheckResult, Summary, Trace
    from webhook.report.svg import chart

    rng = np.random.default_rng(seed)
    pool = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, 1e-300, 5.0, -3.0]
    pick = lambda n: tuple(float(rng.choice(pool)) for _ in range(n))  # noqa: E731
    trace = Trace(canary=pick(12), stable=pick(12), band_low=pick(12), band_high=pick(12),
                  limits=pick(2), evidence=pick(12), evidence_level=math.log(20), unit="s",
                  first_time=0, step=60)
    check = CheckResult(name="c", kind="series", verdict="inconclusive", test="t", reason="r",
                        canary=Summary(12, None), stable=Summary(12, None), trace=trace)
    svg = ET.fromstring(chart(check, "z"))
    assert svg.find(SVG_NS + "desc").text
    assert "nan" not in ET.tostring(svg, encoding="unicode").replace("n/a", "").lower()


def test_report_link_round_trips_every_request_field():
    """Whatever a POST body says, its report link must ask for the same analysis; a field
    added to the request later and forgotten here fails this test."""
    from urllib.parse import parse_qsl

    from werkzeug.datastructures import MultiDict

    from webhook.api.analyze import request_from_query
    from webhook.models import AnalysisRequest
    from webhook.report.query import report_url

    body = {"config": "http", "canary": {"rollouts_pod_template_hash": 'a"b'},
            "stable": 'app="web", rollouts_pod_template_hash!="x"',
            "vars": {"requests_metric": "istio_requests_total"},
            "window": {"start": 1_700_000_000, "lookback": "15m", "step": "30s",
                       "warmup": "2m"},
            "metrics": {"latency": {"tolerance": {"relative": 0.5}, "critical": True}},
            "mode": "fixed", "alpha": 0.01, "provider": "istio", "traffic_split": "weights",
            "revision": "7d9f"}
    request = AnalysisRequest.model_validate(body)
    unset = [name for name in AnalysisRequest.model_fields
             if name != "config" and getattr(request, name) in (None, {}, [])]
    assert not unset, f"set every field in this test: {unset}"

    def round_trip(req: AnalysisRequest) -> AnalysisRequest:
        url = urlsplit(report_url(req, end=1_700_000_900.0))
        return request_from_query("http", MultiDict(parse_qsl(url.query)))

    assert round_trip(request) == request  # start + lookback fix the end: nothing to pin
    for window in ({"lookback": 900.0}, {"start": 1_700_000_000.0}, {}):
        polled = request.model_copy(update={"window": request.window.model_copy(
            update={"start": None, "lookback": None, **window})})
        polled = AnalysisRequest.model_validate(polled.model_dump())
        pinned = polled.model_copy(update={"window": polled.window.model_copy(
            update={"end": 1_700_000_900.0})})
        assert round_trip(polled) == pinned


@pytest.mark.parametrize("config,version,vars_", [
    ("trading", "slippage", {"risk_tolerance": "low"}),
    ("healthcare", "facility", {}),
    ("healthcare", "adverse", {}),
])
def test_domain_configs_draw_one_valid_chart_per_check(client, lab, config, version, vars_):
    """Every metric kind (ratio limits, series, thresholds, events, cohorts, gates) reaches
    the page: one well-formed chart per check, cohorts under their own heading."""
    from webhook.lab.rollouts import (
        HEALTHCARE_STABLE,
        TRADING_STABLE,
        healthcare_hash,
        trading_hash,
    )

    hashes = {"trading": (trading_hash(version), TRADING_STABLE),
              "healthcare": (healthcare_hash(version), HEALTHCARE_STABLE)}[config]
    payload = {"config": config, "canary": {"rollouts_pod_template_hash": hashes[0]},
               "stable": {"rollouts_pod_template_hash": hashes[1]},
               "window": lab.window(60), "vars": vars_}
    answer = client.post("/v1/analyze", json=payload).json
    page = client.post("/v1/analyze?format=html", json=payload)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert f'data-verdict="{answer["verdict"]}"' in html
    figures = re.findall(r'<figure class="check"[^>]*data-check="([^"]*)"', html)
    assert figures and sorted(figures) == sorted(c["name"] for c in answer["checks"])
    svgs = _svgs(html)
    assert len(svgs) == len(answer["checks"])
    assert all(svg.find(SVG_NS + "desc").text for svg in svgs)
    cohorts = {c["cohort"] for c in answer["checks"] if c["cohort"]}
    for cohort in cohorts:
        assert f'<h3 class="cohort">cohort {cohort}</h3>' in html


def test_every_time_axis_says_its_clock_is_utc(client, lab):
    """The page gives the window as 2026-…T08:13:00Z; the charts' axes read a bare 08:14,
    which a reader in New York takes for local time."""
    html = client.get(query(lab, ROLLOUTS["fail"], format="html")).get_data(as_text=True)
    for svg in _svgs(html):
        axes = svg.findall(f"{SVG_NS}line[@class='axis']")
        zones = [t for t in svg.iter(f"{SVG_NS}text") if t.text == "UTC"]
        assert axes and len(zones) == len(axes), svg.get("id")
        for axis, zone in zip(axes, zones, strict=True):  # on the axis' row of labels
            assert float(zone.get("y")) == float(axis.get("y1")) + 14


def test_a_window_of_days_dates_the_time_axis(client, lab):
    """Over two days the same hour comes round twice: a bare "09:13" on the axis, or "judged
    from 09:13 to 09:13" in the text alternative, would name two instants. The chart says
    the dates, as the JSON's window does."""
    end = int(lab.window(60)["end"])
    url = query(lab, ROLLOUTS["fail"], start=end - 2 * 86400, end=end, step="600")
    answer = client.get(url).json
    html = client.get(url + "&format=html").get_data(as_text=True)
    start_day, end_day = answer["window"]["start"][:10], answer["window"]["end"][:10]
    assert start_day != end_day
    for svg in _svgs(html):
        axis = svg.find(f"{SVG_NS}line[@class='axis']").get("y1")
        ticks = [t.text for t in svg.iter(f"{SVG_NS}text")
                 if t.get("class") == "tick" and t.get("text-anchor") == "middle"
                 and float(t.get("y")) == float(axis) + 14]
        assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
        assert all(re.match(r"\d{4}-\d\d-\d\d ", t) for t in ticks), ticks
        # within the window, in order (the first tick may fall on the next day: a window
        # begun in the evening)
        assert start_day <= ticks[0][:10] and ticks[-1][:10] <= end_day, ticks
        assert ticks == sorted(ticks), ticks
        desc = svg.find(f"{SVG_NS}desc").text
        assert f"from {start_day} " in desc and f"to {end_day} " in desc, desc


def test_the_page_and_the_table_say_what_was_compared(client, lab):
    """A report link opened from a Canary's event or an AnalysisRun: the page and the text
    table name the canary's and the stable's selectors, not only the URL does."""
    canary = ROLLOUTS["fail"]
    html = client.get(query(lab, canary, format="html")).get_data(as_text=True)
    compared = re.search(r'<p class="meta" id="sides">(.*?)</p>', html)
    assert compared, html[:2000]
    shown = html_unescape(re.sub(r"<[^>]+>", "", compared.group(1)))
    assert shown == (f'canary {{rollouts_pod_template_hash="{canary}"}} vs '
                     f'stable {{rollouts_pod_template_hash="{ARGO_STABLE}"}}')
    text = client.get(query(lab, canary, format="text")).get_data(as_text=True)
    assert (f'canary:  {{rollouts_pod_template_hash="{canary}"}}   '
            f'stable: {{rollouts_pod_template_hash="{ARGO_STABLE}"}}') in text.splitlines()
