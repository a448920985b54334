"""With API tokens set, the report link an answer carries opens without the token (a browser
cannot send one; Flagger copies the link into the Canary's events), for that one report and
until it expires; anything else still needs the token."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from webhook.app import create_app
from webhook.lab.rollouts import ARGO_STABLE, NAMESPACE, SCHEME_VARS, argo_hash
from webhook.report import signing
from webhook.settings import load_settings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(lab, **settings):
    return create_app(load_settings(prometheus_url=lab.url, config_dir=None,
                                    **settings)).test_client()


@pytest.fixture(scope="module")
def guarded(lab):
    return _client(lab, api_tokens=f"other,{TOKEN}")


def _answer(client, lab, version: str = "errors3x", **headers) -> dict:
    payload = {"config": "http", "canary": {"rollouts_pod_template_hash": argo_hash(version)},
               "stable": {"rollouts_pod_template_hash": ARGO_STABLE}, "mode": "fixed",
               "window": {"end": lab.window(60)["end"]}}
    r = client.post("/v1/analyze", json=payload, headers={**AUTH, **headers})
    assert r.status_code == 200, r.json
    return r.json


def _with(link: str, **changes: str) -> str:
    parts = urlsplit(link)
    params = [(k, changes.get(k, v)) for k, v in parse_qsl(parts.query)]
    return f"{parts.path}?{urlencode(params)}"


def test_the_answers_report_link_opens_without_the_token(guarded, lab):
    answer = _answer(guarded, lab)
    link = answer["report"]
    assert re.search(r"&expires=\d+&sig=[\w-]{43}$", link), link
    assert guarded.get(link.replace("&sig", "&x")).status_code == 401  # the token otherwise
    page = guarded.get(link)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'data-verdict="fail"' in html
    # the page's own links to the JSON and text forms are signed too, and give the answer
    json_link = re.search(r'href="([^"]*format=json[^"]*)"', html).group(1).replace("&amp;", "&")
    again = guarded.get(json_link)
    assert again.status_code == 200 and again.json["checks"] == answer["checks"]


def test_a_changed_link_needs_the_token(guarded, lab):
    link = _answer(guarded, lab)["report"]
    changed = [
        _with(link, **{"canary.rollouts_pod_template_hash": argo_hash("healthy")}),
        _with(link, end=str(int(dict(parse_qsl(urlsplit(link).query))["end"]) - 60)),
        _with(link, format="json"),  # each format has its own link
        link.replace("/v1/analyze/http?", "/v1/analyze/trading?"),
        link + "&mode=sequential",
        link.replace("&sig=", "&sig=A"),
        link[: link.index("&expires=")],
    ]
    for url in changed:
        r = guarded.get(url)
        assert r.status_code == 401, url
        assert r.headers["WWW-Authenticate"] == "Bearer"
    tampered = guarded.get(changed[0])  # a report link: its error is a page, as the report
    assert tampered.mimetype == "text/html"
    assert "the signature does not match this report" in tampered.get_data(as_text=True)
    # the token still opens any of them
    assert guarded.get(changed[0], headers=AUTH).status_code == 200


def test_a_link_expires(guarded, lab):
    link = _answer(guarded, lab)["report"]
    key = signing.link_key(("other", TOKEN))
    unsigned = link[: link.index("&expires=")]
    stale = signing.sign(unsigned, "http", key, hours=72, now=1_000_000_000)
    r = guarded.get(stale)
    assert r.status_code == 401
    assert "the report link expired at 2001-09-" in r.get_data(as_text=True)
    # a link signed with other tokens (rotated since) is refused
    other = signing.sign(unsigned, "http", signing.link_key(("rotated",)), hours=72)
    assert guarded.get(other).status_code == 401
    # a link made to last longer than the server allows now is refused
    long = signing.sign(unsigned, "http", key, hours=24 * 30)
    assert "outlives" in guarded.get(long).get_data(as_text=True)


def test_the_flagger_hook_answers_link_opens_too(guarded):
    payload = {"name": "badinfo", "namespace": NAMESPACE, "phase": "Progressing",
               "metadata": {"provider": "app", "lookback": "60m", **SCHEME_VARS["app"]}}
    r = guarded.post("/v1/hooks/rollout", json=payload)
    assert r.status_code == 412
    link = re.search(r", report (/v1/analyze/\S+)\]$", r.get_data(as_text=True).strip())
    assert link and "&sig=" in link.group(1)
    page = guarded.get(link.group(1))
    assert page.status_code == 200 and 'data-verdict="fail"' in page.get_data(as_text=True)


def test_without_tokens_or_with_signing_off_links_are_plain(lab):
    open_judge = _client(lab)
    link = _answer(open_judge, lab)["report"]
    assert "sig=" not in link and "expires=" not in link
    assert open_judge.get(link).status_code == 200
    off = _client(lab, api_tokens=TOKEN, report_link_hours=0)
    link = _answer(off, lab)["report"]
    assert "sig=" not in link
    assert off.get(link).status_code == 401
    # a link signed before signing was turned off opens no more
    signed = signing.sign(link, "http", signing.link_key((TOKEN,)), hours=1)
    assert off.get(signed).status_code == 401


def test_a_signed_link_is_no_token_for_a_post(guarded, lab):
    link = _answer(guarded, lab)["report"]
    query = urlsplit(link).query
    r = guarded.post("/v1/analyze?" + query, json={
        "config": "http", "canary": {"rollouts_pod_template_hash": argo_hash("healthy")},
        "stable": {"rollouts_pod_template_hash": ARGO_STABLE}})
    assert r.status_code == 401


def test_served_by_gunicorn_the_link_opens_in_a_plain_http_client(lab):
    """gunicorn hands the raw query string to the app: the signature must hold through it."""
    import requests

    from webhook.lab.judge import served_judge

    with served_judge(lab.url, workers=1, env={"CANARY_JUDGE_API_TOKENS": TOKEN}) as url:
        payload = {"config": "http", "mode": "fixed", "window": {"end": lab.window(60)["end"]},
                   "canary": {"rollouts_pod_template_hash": argo_hash("errors3x")},
                   "stable": {"rollouts_pod_template_hash": ARGO_STABLE}}
        answer = requests.post(url + "/v1/analyze", json=payload, headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        page = requests.get(url + answer.json()["report"], timeout=30)
        assert page.status_code == 200 and 'data-verdict="fail"' in page.text
        assert requests.get(url + _with(answer.json()["report"], format="text"),
                            timeout=30).status_code == 401


def test_a_forged_expiry_is_refused_without_an_error():
    """Whatever a caller puts in the query, the check answers with a reason, never raises:
    latin-1 digits such as '²' are digits to str.isdigit but not to int()."""
    key = signing.link_key((TOKEN,))
    for query in ("a=1&expires=\u00b2&sig=x", "expires=1&sig=", "&sig=&sig=", "sig=x",
                  "a=1&expires=99999999999999999999&sig=x", ""):
        assert signing.check("http", query, key, 72) is not None, query
    good = signing.sign("/v1/analyze/http?a=1", "http", key, 72).split("?", 1)[1]
    assert signing.check("http", good, key, 72) is None
    assert signing.check("trading", good, key, 72) is not None
