"""An error answers in the format the caller asked for (`?format=text`, `Accept: text/plain`,
a report link's `format=html`), with the same status code: the on-call running curl reads
lines, a browser reads a page, and Argo and Flagger, who never ask, keep the JSON."""

from __future__ import annotations

import pytest

from webhook.app import create_app
from webhook.lab.prometheus import free_port
from webhook.lab.rollouts import ARGO_STABLE, argo_hash
from webhook.settings import load_settings

GOOD = {"canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}}
BAD_STEP = {**GOOD, "window": {"step": "soon"}}


@pytest.mark.parametrize(("url", "headers"), [
    ("/v1/analyze?format=text", {}),
    ("/v1/analyze", {"Accept": "text/plain"}),
])
def test_a_400_asked_as_text_is_text(client, url, headers):
    r = client.post(url, json=BAD_STEP, headers=headers)
    assert r.status_code == 400
    assert r.mimetype == "text/plain", r.get_data(as_text=True)
    text = r.get_data(as_text=True)
    assert text.splitlines()[0] == "error:   400 bad_request"
    assert "field:   window.step" in text
    assert "message: window.step: 'soon' is not a duration; use e.g. 30s" in text
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_json_stays_json_for_controllers(client):
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"},
                    {"User-Agent": "Go-http-client/1.1"}):
        r = client.post("/v1/analyze", json=BAD_STEP, headers=headers)
        assert r.status_code == 400 and r.is_json, headers
        assert r.json["field"] == "window.step"


def test_a_report_links_error_is_a_page(client, lab):
    """A report link opened with a broken parameter: a page saying what to fix, escaped (the
    message quotes the caller's value), with the report's CSP, status unchanged."""
    r = client.get("/v1/analyze/http", query_string={
        "canary.rollouts_pod_template_hash": argo_hash("errors3x"),
        "stable.rollouts_pod_template_hash": ARGO_STABLE, "step": "<script>x</script>",
        "format": "html"})
    assert r.status_code == 400 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert page.startswith("<!DOCTYPE html>")
    assert 'id="error">400 bad_request<' in page
    assert "<code>window.step</code>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    browser = client.get("/v1/analyze/http", query_string={"canary.app": "a", "colour": "x"},
                         headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 400 and browser.mimetype == "text/html"
    assert "<code>colour</code>" in browser.get_data(as_text=True)


def test_a_broken_source_asked_as_text_is_still_a_5xx_in_text(lab):
    app = create_app(load_settings(prometheus_url=f"http://127.0.0.1:{free_port()}",
                                   analysis_deadline_seconds=2))
    r = app.test_client().post("/v1/analyze?format=text", json={**GOOD, "window": lab.window(30)})
    assert r.status_code == 503 and r.mimetype == "text/plain"
    assert r.get_data(as_text=True).startswith("error:   503 metrics_source_unavailable\n")


def test_control_characters_in_a_text_error_are_escaped(client):
    r = client.post("/v1/analyze?format=text", json={**GOOD, "window": {"step": "1\x1b[2J"}})
    assert r.status_code == 400
    assert "\x1b" not in r.get_data(as_text=True) and "\\x1b[2J" in r.get_data(as_text=True)


def test_an_unknown_format_is_named_in_json(client):
    r = client.post("/v1/analyze?format=txt", json=GOOD)
    assert r.status_code == 400 and r.is_json and r.json["field"] == "format"
