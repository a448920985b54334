"""A canary whose last run of traffic is over (Flagger scaled it to zero after its analysis,
or every canary pod is down) has nothing of the current rollout to judge: a controller's poll
without a window answers inconclusive, saying so, where it used to judge that earlier run and
pass or fail it (another version's data, as Flagger's `app=T` labels do not tell versions
apart). A quiet spell within the five minutes that still count as one rollout is a blip: the
run is judged as before. A new revision Flagger restarts the analysis for (a new `checksum`,
a one-tick pause the data cannot tell from a blip) is judged from when this pod first saw it.
Planted in a real Prometheus around the wall clock, and asked the way Argo (GET, no window)
and Flagger (hooks) ask.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace

import pytest

from webhook import shared_dir
from webhook.app import create_app
from webhook.lab import PrometheusLab, render_openmetrics
from webhook.lab.rollouts import BASE
from webhook.models import parse_time
from webhook.settings import load_settings
from webhook.sources.prometheus import PrometheusSource

MIN = 60.0
HASH = "rollouts_pod_template_hash"
STABLE = "z-stable"
# canary hash -> (error ratio, runs of traffic in minutes before the anchor; None: on to +10)
RUNS = {
    "z-bad": (0.03, [(60, 40)]),  # a bad version, scaled to zero 40 minutes ago
    "z-good": (0.01, [(60, 40)]),  # a healthy one, likewise
    "z-back": (0.03, [(60, 40)]),  # the bad run, then a healthy new one (below)
    "z-blip": (0.03, [(40, 3)]),  # bad, quiet for the last 3 minutes: still one rollout
}
NEW_RUN = (0.01, 12)  # z-back's new rollout: healthy, since 12 minutes before the anchor
# Flagger's "New revision detected! Restarting analysis": a bad revision served until 13
# minutes before the anchor, Flagger set the canary's weight to 0 for one tick, and the fixed
# revision (same `app=T` labels, a new checksum) has served healthily for 12 minutes since.
RESTART = {"z-fix": ((0.03, 30, 13), (0.01, 12)),
           # and the other way: a healthy revision, then a bad one for the last 7 minutes
           "z-flip": ((0.01, 40, 8), (0.03, 7))}
NO_TRAFFIC = "no canary traffic for more than 300s"


def _side(hash_: str, rps: float, error_ratio: float = 0.01):
    return replace(BASE, rps=rps, error_ratio=error_ratio, labels={"app": "shop", HASH: hash_})


@pytest.fixture(scope="module")
def served():
    if not PrometheusLab.available():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    anchor = math.floor(time.time() / MIN) * MIN
    with PrometheusLab() as prom:
        prom.plant(render_openmetrics([_side(STABLE, 40)], anchor - 3 * 3600,
                                      anchor + 10 * MIN, seed=1))
        for seed, (hash_, (errors, runs)) in enumerate(RUNS.items()):
            for began, ended in runs:
                prom.plant(render_openmetrics([_side(hash_, 20, errors)],
                                              anchor - began * MIN, anchor - ended * MIN,
                                              seed=10 + seed))
        for seed, (hash_, ((bad, began, ended), (good, since))) in enumerate(RESTART.items()):
            prom.plant(render_openmetrics([_side(hash_, 20, bad)], anchor - began * MIN,
                                          anchor - ended * MIN, seed=40 + seed))
            prom.plant(render_openmetrics([_side(hash_, 20, good)], anchor - since * MIN,
                                          anchor + 10 * MIN, seed=50 + seed))
        errors, began = NEW_RUN
        prom.plant(render_openmetrics([_side("z-back", 20, errors)], anchor - began * MIN,
                                      anchor + 10 * MIN, seed=30))
        app = create_app(load_settings(prometheus_url=prom.start(), config_dir=None))
        yield app.test_client(), anchor


def _argo(client, canary: str) -> dict:
    """Argo's default GET of the http config, no window: a sequential poll of "now"."""
    r = client.get("/v1/analyze/http", query_string=_sides(canary))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def _sides(canary: str) -> dict[str, str]:
    return {"canary": f'{HASH}="{canary}"', "stable": f'{HASH}="{STABLE}"'}


def _hook(client, hook: str, canary: str, checksum: str = "") -> int:
    meta = {"config": "http", "canary_selector": f'{HASH}="{canary}"',
            "stable_selector": f'{HASH}="{STABLE}"'}
    payload = {"name": "web", "namespace": "shop", "phase": "Progressing", "metadata": meta,
               "checksum": checksum}
    return client.post(f"/v1/hooks/{hook}", json=payload).status_code


@pytest.mark.parametrize("canary", ["z-bad", "z-good"])
def test_a_run_that_is_over_is_not_judged_as_the_current_rollout(served, canary):
    client, _ = served
    for _ in range(2):  # the second poll starts from the remembered start
        body = _argo(client, canary)
        assert body["verdict"] == "inconclusive" and not body["pass"], body["reason"]
        assert body["checks"] and all(NO_TRAFFIC in c["reason"] for c in body["checks"])
        assert body["window"]["start"] == body["window"]["end"]  # nothing judged
    page = client.get("/v1/analyze/http", query_string={**_sides(canary), "format": "html"})
    assert page.status_code == 200 and NO_TRAFFIC in page.get_data(as_text=True)


def test_flagger_hooks_neither_block_nor_roll_back_on_an_earlier_run(served):
    """The rolled-back bad version's data used to answer the next rollout's hooks: its
    pre-rollout check failed (412) and the rollback hook fired (200) before the new canary
    served a request; the healthy one's confirm-promotion opened."""
    client, _ = served
    assert _hook(client, "pre-rollout", "z-bad") == 200  # inconclusive: low data passes
    assert _hook(client, "rollback", "z-bad") != 200
    assert _hook(client, "confirm-promotion", "z-good") != 200


def test_a_new_run_after_the_pause_is_judged_on_its_own(served):
    client, anchor = served
    body = _argo(client, "z-back")
    assert body["verdict"] != "fail", body["reason"]  # the earlier bad run is not judged
    start = body["window"]["start"]
    assert abs(parse_time(start) - (anchor - NEW_RUN[1] * MIN)) <= 2 * MIN, start


def test_a_quiet_spell_of_a_few_minutes_is_still_the_rollout(served):
    """Three quiet minutes (a canary restarting) do not end a rollout: its run is judged and
    its 3x errors fail it."""
    body = _argo(served[0], "z-blip")
    assert body["verdict"] == "fail", body["reason"]
    assert not any(NO_TRAFFIC in c["reason"] for c in body["checks"])


# Flagger's checksums (canary.ComputeHash: short, lower-case) of the two revisions
OLD, NEW = "7c5d9f8b6a", "5b6c4d8f9e"


def _hook_answer(client, hook: str, canary: str, checksum: str, name: str) -> tuple[int, str]:
    """A hook for Flagger canary shop/`name` judging the planted canary `canary`."""
    meta = {"config": "http", "canary_selector": f'{HASH}="{canary}"',
            "stable_selector": f'{HASH}="{STABLE}"'}
    payload = {"name": name, "namespace": "shop", "phase": "Progressing", "metadata": meta,
               "checksum": checksum}
    r = client.post(f"/v1/hooks/{hook}", json=payload)
    return r.status_code, r.get_data(as_text=True)


def _at(client, when: float) -> None:
    """This app's hooks arrive at `when` (the record of revisions keeps the pod's clock)."""
    client.application.extensions["canary_judge"].revisions.clock = lambda: when


def _judged_from(line: str) -> str:
    found = re.search(r"judged from (\d\d:\d\d:\d\dZ), when this replica saw revision "
                      r"(\S+) replace (\S+?)[;\s]", line)
    assert found, line
    return found.group(1)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(ts))


def _restarted(client, anchor: float, canary: str, name: str) -> float:
    """Flagger's hooks for `canary` before and after its restart: the old revision's at 20
    minutes before the anchor, then the new one's in the quiet tick (weight 0) before the new
    revision's traffic; returns that moment."""
    _at(client, anchor - 20 * MIN)
    assert _hook_answer(client, "rollout", canary, OLD, name)[0] in (200, 412)
    restart = anchor - RESTART[canary][1][1] * MIN - 20
    _at(client, restart)
    return restart


def test_a_revision_restarted_mid_rollout_is_not_judged_on_the_old_revision(served):
    """Flagger restarts the analysis when a new revision arrives mid-rollout (failed checks
    reset, weight 0 for one tick, then a new `checksum` in every hook): the fixed revision is
    not rolled back or failed for what the revision it replaced did. It used to be: the
    one-tick pause is a blip to the data, and the rollback hook answered 200 at once."""
    client, anchor = served
    restart = _restarted(client, anchor, "z-fix", "fix")
    status, line = _hook_answer(client, "rollback", "z-fix", NEW, "fix")
    assert status != 200, line
    # judged from the first whole step after this replica first saw the new revision
    assert _judged_from(line) == _clock(math.ceil(restart / MIN) * MIN), line
    assert f"saw revision {NEW} replace {OLD}" in line
    _at(client, restart + 5 * MIN)  # a later tick: still from the restart
    status, line = _hook_answer(client, "rollout", "z-fix", NEW, "fix")
    assert status == 200, line
    assert _judged_from(line) == _clock(math.ceil(restart / MIN) * MIN), line


def test_a_bad_revision_replacing_a_good_one_fails_on_its_own_data(served):
    """The dangerous direction: a bad revision arriving mid-rollout after a healthy one had
    its errors diluted by the healthy one's data (no failure, no rollback). Judged from the
    restart it fails, and the rollback hook rolls it back."""
    client, anchor = served
    _restarted(client, anchor, "z-flip", "flip")
    status, line = _hook_answer(client, "rollback", "z-flip", NEW, "flip")
    assert status == 200 and line.startswith("roll back: "), line
    status, line = _hook_answer(client, "rollout", "z-flip", NEW, "flip")
    assert status == 412 and "error_ratio" in line, line


def test_a_blip_within_one_revision_is_judged_as_before(served):
    """The same checksum before and after a three-minute pause (a canary restarting, not a new
    revision): the run is judged whole, as the data say, and its 3x errors roll it back. A
    record that bounded the window at its first sighting (3 minutes before the pause ended)
    would judge two minutes of it and roll back nothing."""
    client, anchor = served
    _at(client, anchor - 5 * MIN)
    _hook_answer(client, "rollout", "z-blip", OLD, "blip")
    _at(client, anchor)
    status, line = _hook_answer(client, "rollback", "z-blip", OLD, "blip")
    assert status == 200 and "judged from" not in line, line


def test_a_replica_without_a_record_answers_as_before(served):
    """The first checksum this replica sees for a canary bounds nothing: it answers what a
    hook without a checksum answers, the old revision's data included."""
    client, anchor = served
    _at(client, anchor)
    plain = _hook_answer(client, "rollback", "z-fix", "", "fresh")
    first = _hook_answer(client, "rollback", "z-fix", NEW, "fresh")
    assert first[0] == plain[0] == 200 and "judged from" not in first[1], first


def test_argo_and_the_report_link_after_a_restart(served):
    """Argo's GET names the pod-template hash, one per revision, and no hook: what a Flagger
    canary's record holds changes nothing there. The hook's report link carries its bound
    (`not_before`), so the page shows the window the hook judged, and says why."""
    client, anchor = served
    before = _argo(client, "z-fix")
    restart = _restarted(client, anchor, "z-fix", "fix-link")
    status, line = _hook_answer(client, "rollout", "z-fix", NEW, "fix-link")
    assert status == 200, line
    after = _argo(client, "z-fix")
    assert after["window"]["start"] == before["window"]["start"]
    assert after["window"]["note"] == "" and after["verdict"] == "fail", after["reason"]
    link = re.search(r"report (\S+)\]", line).group(1)
    assert f"not_before={int(restart)}&" in link, link
    page = client.get(link.replace("format=html", "format=json"))
    assert page.status_code == 200, page.get_data(as_text=True)
    body = page.json
    assert parse_time(body["window"]["start"]) == math.ceil(restart / MIN) * MIN
    assert body["window"]["note"].startswith(f"judged from {_judged_from(line)}, not before ")
    assert body["verdict"] != "fail", body["reason"]
    html = client.get(link).get_data(as_text=True)
    assert f'id="note">{body["window"]["note"]}<' in html


def test_one_worker_records_the_revision_another_uses_it(served, tmp_path, monkeypatch):
    """Flagger's calls reach any worker of the pod (a new connection each): a worker that saw
    the old revision, then the new one only after another worker did, judges from the moment
    the pod first saw it, through the store the pod's master makes."""
    client, anchor = served
    settings = client.application.extensions["canary_judge"].settings
    monkeypatch.setenv(shared_dir.DIR_ENV, str(tmp_path))
    one, two = (create_app(settings, source=PrometheusSource(settings)).test_client()
                for _ in range(2))
    restart = _restarted(one, anchor, "z-fix", "fix-shared")
    _at(two, restart)
    assert _hook_answer(two, "rollout", "z-fix", NEW, "fix-shared")[0] == 200
    _at(one, anchor - 2 * MIN)  # worker one's first sight of the new revision, much later
    status, line = _hook_answer(one, "rollback", "z-fix", NEW, "fix-shared")
    assert status != 200 and _judged_from(line) == _clock(math.ceil(restart / MIN) * MIN), line
