"""`/v1/hooks/<type>`: Flagger Canary webhooks.

Flagger reads only the status code: 200/201/202 pass, anything else fails, and for a 4xx the
body becomes the reason in Kubernetes Events. The hook type is not in the payload (phase is
"Progressing" for most types), so it comes from the path alone. What each answer means per type
(README.md, "Wiring Flagger"):

| type | 200 when | otherwise |
|---|---|---|
| pre-rollout, rollout | no failure (inconclusive too, unless `inconclusive: fail`) | 412 |
| confirm-traffic-increase | no failure (same rule) | 412 holds the weight |
| confirm-promotion | the analysis passed conclusively | 412 waits |
| confirm-rollout | the later hooks take the metadata; no gate blocks a start now | 400, 412 wait |
| rollback | a critical check failed: roll back now | 412 (and 5xx on errors): no rollback |
| post-rollout, event | always, at once | - |

Failures of the judge itself are 5xx: Flagger discards their body and may retry.

A hook whose `checksum` replaced the one this pod saw before for the canary (Flagger restarted
the analysis for a new revision) is judged only from when this pod first saw it
(`webhook.revisions`); its answer says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Blueprint, Response
from flask import request as flask_request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webhook.analysis import (
    AnalysisRequestError,
    AnalysisResult,
    check_request,
    evaluate_gates,
    not_before_words,
)
from webhook.api.body import BodyError, read_json_object
from webhook.api.common import get_service, report_link, validation_message
from webhook.configs import PROVIDERS, ConfigRegistry
from webhook.models import AnalysisRequest
from webhook.observability import HOOK_RESPONSES, audit
from webhook.render import printable, readable
from webhook.report.query import report_url
from webhook.revisions import Change, short
from webhook.sources import QueryLanguageError, SourceError, query_language
from webhook.sources.prometheus.promql import stored_label_name
from webhook.sources.prometheus.selectors import pod_selectors
from webhook.timefmt import clock

bp = Blueprint("hooks", __name__)

HOOK_TYPES = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
              "confirm-promotion", "rollback", "post-rollout", "event")
_WINDOW_KEYS = ("start", "end", "lookback", "step", "warmup")  # the request's `window`, flat
_METADATA_KEYS = {"config", "provider", "target", "canary_selector", "stable_selector",
                  "namespace_label", "app_label", *_WINDOW_KEYS, "mode", "alpha", "inconclusive",
                  "traffic_split"}
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LANGUAGE = query_language()


class FlaggerPayload(BaseModel):
    """What Flagger posts; `metadata` is a string map and absent when the Canary sets none."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=253)
    namespace: str = Field(min_length=1, max_length=253)
    phase: str = ""
    checksum: str = ""
    metadata: dict[str, str] | None = None


_MAX_LINE = 1000


def _text(status: int, hook: str, line: str) -> Response:
    HOOK_RESPONSES.labels(hook, str(status)).inc()
    # Flagger copies it into the Canary's events, which `kubectl describe` prints to a
    # terminal: a label value's escape sequences are shown, not obeyed
    one_line = printable(" ".join(line.split()))[:_MAX_LINE]
    return Response(one_line + "\n", status=status, mimetype="text/plain")


def _selectors(p: FlaggerPayload, meta: dict[str, str]) -> tuple[dict[str, str] | str,
                                                                   dict[str, str] | str]:
    """Canary = target T, stable = T-primary, in the label scheme of the mesh in use."""
    if "canary_selector" in meta or "stable_selector" in meta:
        if not ("canary_selector" in meta and "stable_selector" in meta):
            raise AnalysisRequestError("metadata: give both canary_selector and stable_selector",
                                       "metadata.stable_selector")
        return meta["canary_selector"], meta["stable_selector"]
    provider = meta.get("provider", "app")
    if provider not in PROVIDERS:
        raise AnalysisRequestError(f"metadata.provider: {provider!r} is not one of "
                                   f"{', '.join(PROVIDERS)}", "metadata.provider")
    target = meta.get("target") or p.name
    if not _K8S_NAME.fullmatch(target):
        raise AnalysisRequestError(f"metadata.target: {target!r} is not a Kubernetes name",
                                   "metadata.target")
    ns_label = meta.get("namespace_label", "namespace")
    if ns_label and provider != "istio":
        _label_name(ns_label, "namespace_label")
    ns = {ns_label: p.namespace} if ns_label else {}
    if provider == "istio":
        return ({"destination_workload": target, "destination_workload_namespace": p.namespace},
                {"destination_workload": f"{target}-primary",
                 "destination_workload_namespace": p.namespace})
    if provider == "linkerd":
        return ({"deployment": target, **ns}, {"deployment": f"{target}-primary", **ns})
    if provider == "pod":
        try:
            return pod_selectors(target, ns, "metadata.namespace_label")
        except QueryLanguageError as exc:
            raise AnalysisRequestError(exc.message, exc.field) from exc
    label = _label_name(meta.get("app_label", "app"), "app_label")
    return {label: target, **ns}, {label: f"{target}-primary", **ns}


def _label_name(name: str, key: str) -> str:
    """`name` when Prometheus can hold it as a label name. Checked here so that the answer
    names the metadata key: the selectors' own check said `canary: ...`, a key no Canary has,
    for the pod label as Kubernetes writes it (`app.kubernetes.io/name`)."""
    if _LANGUAGE.label_name_ok(name):
        return name
    stored = stored_label_name(name)
    hint = (f"; give the name Prometheus stores, e.g. {stored!r} (Kubernetes service "
            "discovery writes a pod label app.kubernetes.io/name as app_kubernetes_io_name)"
            if stored else "")
    raise AnalysisRequestError(f"metadata.{key}: {name!r} is not a Prometheus label name "
                               f"(letters, digits and _, no digit first){hint}", f"metadata.{key}")


_WINDOW_FIELD = re.compile(rf"(?<![\w.])(?:metadata\.)?window\.({'|'.join(_WINDOW_KEYS)})\b")


def metadata_spelling(exc: AnalysisRequestError,
                      meta: Mapping[str, str] | None = None) -> AnalysisRequestError:
    """A refusal as the Canary names the key: `metadata.<key>`, not `vars.<key>`,
    `window.<key>` or (a raw selector in `meta`) `canary.<label>`.

    Every metadata key that is not a hook option is a var of the analysis, the window's keys
    are its `window`'s and `canary_selector` / `stable_selector` its `canary` / `stable`; the
    analysis names them as the POST body and Argo's args spell them, but a Canary has none of
    those keys, and the operator searched its YAML for one. Other refusals are returned
    unchanged."""
    field = exc.field.removeprefix("metadata.")
    if field == "window" or field.removeprefix("window.") in _WINDOW_KEYS:
        return _window_spelling(exc, field)
    side = field.partition(".")[0]
    if side in ("canary", "stable") and f"{side}_selector" in (meta or {}):
        return _selector_spelling(exc, side)
    if not field.startswith("vars."):
        return exc
    key = field.removeprefix("vars.")
    message = (exc.message.replace(f"; in Flagger metadata the key is {key}", "")
               .replace(f"metadata.vars.{key}", f"metadata.{key}"))
    message = re.sub(rf"(?<![\w.])vars\.{re.escape(key)}\b", f"metadata.{key}", message)
    return AnalysisRequestError(message, f"metadata.{key}", exc.status)


def _metadata_words(text: str) -> str:
    """`text` (a refusal, or an answer's reason) with the window's keys as the Canary names
    them: `window.warmup` is `metadata.warmup`. The analysis words its reasons for the POST
    body and Argo's args; one sentence serves every caller, and each layer re-spells it (as
    `metadata_spelling` does a refusal's field), rather than a second copy of the text."""
    return _WINDOW_FIELD.sub(r"metadata.\1", text)


def _canary_words(text: str, change: Change | None) -> str:
    """`text` (an answer's reason) as the Canary reads it: the window's keys as its metadata
    names them (`_metadata_words`), and the bound a revision change set as what happened.
    The hook sets `window.not_before` itself (`_after_revision_change`) and no Canary has the
    key, so the words naming it (`not_before_words`, exactly) become the change this replica
    saw, as the window's note does (`Change.note`); the sentence around them is the
    analysis' own, for every caller."""
    if change is not None:
        text = text.replace(not_before_words(change.since),
                            f"this replica saw revision {short(change.new)} replace "
                            f"{short(change.old)} at {clock(change.since)} (the new "
                            "revision's data begin then)")
    return _metadata_words(text)


def _window_spelling(exc: AnalysisRequestError, field: str) -> AnalysisRequestError:
    """A window key's refusal as `metadata.lookback` (the metadata holds start, end, lookback,
    step and warmup flat); `window: give start and end, or lookback…` as `metadata: …`."""
    message = re.sub(r"^(?:metadata\.)?window:", "metadata:", _metadata_words(exc.message))
    key = field.removeprefix("window").removeprefix(".")
    return AnalysisRequestError(message, f"metadata.{key}" if key else "metadata", exc.status)


def _selector_spelling(exc: AnalysisRequestError, side: str) -> AnalysisRequestError:
    """A raw selector's refusal as `metadata.canary_selector, label app: …` (`canary.app: …`
    in the analysis): the label a matcher error is about stays named."""
    key = f"metadata.{side}_selector"
    message = re.sub(rf"^(?:metadata\.)?{side}(?:\.([^:\s]+))?:",
                     lambda m: f"{key}, label {m[1]}:" if m[1] else f"{key}:", exc.message)
    return AnalysisRequestError(message, key, exc.status)


def analysis_request(p: FlaggerPayload) -> AnalysisRequest:
    meta = p.metadata or {}
    # Any other value (`Fail`, `"true"`) used to read as the default: a canary with no data
    # answered 200 where the operator had asked for failed checks, silently.
    if meta.get("inconclusive", "pass") not in ("pass", "fail"):
        raise AnalysisRequestError(
            f"metadata.inconclusive: {meta['inconclusive']!r} is not 'pass' or 'fail'; 'fail' "
            "answers an inconclusive analysis 412 (a failed check), 'pass' (the default) 200",
            "metadata.inconclusive")
    canary, stable = _selectors(p, meta)
    vars_ = {k: v for k, v in meta.items() if k not in _METADATA_KEYS}
    vars_.setdefault("namespace", p.namespace)
    vars_.setdefault("name", p.name)
    vars_.setdefault("target", meta.get("target") or p.name)
    data: dict[str, Any] = {
        "config": meta.get("config", "http"), "canary": canary, "stable": stable, "vars": vars_,
        "window": {k: meta[k] for k in _WINDOW_KEYS if k in meta},
    }
    for key in ("mode", "alpha", "provider"):
        if key in meta:
            data[key] = meta[key]
    # Flagger shifts traffic by weight (a mesh or ingress; A/B by header), so an instance's
    # share of it is never a stable pod's until max weight: per-instance rates are not judged
    data["traffic_split"] = meta.get("traffic_split", "weights")
    if p.checksum:
        data["revision"] = p.checksum[:128]
    try:
        return AnalysisRequest.model_validate(data)
    except ValidationError as exc:
        message, field = validation_message(exc, prefix="metadata.")
        raise AnalysisRequestError(message, field) from exc


def unknown_metadata(meta: dict[str, str], req: AnalysisRequest,
                     registry: ConfigRegistry) -> str | None:
    """A metadata key that is neither a hook option nor a var the config reads is a typo
    (`provder: istio`): silently turning it into an unused var would judge the wrong series."""
    base = registry.get(req.config)
    if base is None:
        return None  # the analysis answers "unknown config"
    config = base.for_provider(req.provider)
    used = config.var_names()
    unknown = sorted(set(meta) - _METADATA_KEYS - used)
    if not unknown:
        return None
    for_provider = f" with provider {req.provider}" if config is not base else ""
    return (f"metadata.{unknown[0]}: not a hook option nor a var of config {config.name!r}"
            f"{for_provider}; "
            f"check its spelling (options: {', '.join(sorted(_METADATA_KEYS))}; vars: "
            f"{', '.join(sorted(used)) or 'none'})")


def _confirm_rollout(hook: str, req: AnalysisRequest, service: Any,
                     who: dict[str, str]) -> Response:
    """May a rollout start now? The config's gates decide; no metrics are queried.

    Metadata that every later hook refuses is refused here first, with their answer
    (`check_request`): Flagger waits on any non-2xx here and calls again each tick, whereas
    a 200 moved traffic to a canary whose rollout hooks could only answer 400, each a failed
    check. That includes what depends on the clock as the later hooks read it: a start more
    than a few minutes ahead holds the rollout until it has passed (then the first rollout
    hook says "too little data yet", a 200), instead of opening it to hooks that refuse it."""
    check_request(req, service.registry, service.policy, language=service.language)
    # The gates read the server's clock: metadata is the app team's own, and `end: <last
    # Saturday>` opened the market-hours gate while the exchange traded.
    checks = evaluate_gates(req, service.registry, "start", at=service.clock(),
                            language=service.language)
    blocking = [c for c in checks if c.verdict != "pass"]
    audit({**who, "event": "flagger_gate", "config": req.config,
           "verdict": "closed" if blocking else "open",
           "reason": "; ".join(c.reason for c in checks) or "no gates"})
    if blocking:
        return _text(412, hook, "; ".join(c.reason for c in blocking))
    reasons = "; ".join(c.reason for c in checks)
    return _text(200, hook, f"rollout may start: {reasons or f'config {req.config} has no gates'}")


def _decide(hook: str, result: AnalysisResult, meta: dict[str, str],
            report: str = "") -> tuple[int, str]:
    verdict = result.verdict
    # why the window starts late (a new revision replaced the judged one), before the tail
    tail = (f"{'; ' + result.note if result.note else ''}"
            f" [analysis {result.analysis_id}, score {result.score:g}"
            f"{', report ' + report if report else ''}]")
    # Flagger shows the answer in the Canary's events: keep the link whole within one line
    # (the reason is already in the Canary's words: `service.analyze(wording=_canary_words)`)
    reason = result.reason[:max(_MAX_LINE - len(tail) - 40, 200)]
    if hook == "rollback":
        if result.critical_failure:
            return 200, f"roll back: {reason}{tail}"
        return 412, f"no rollback: no critical check failed ({verdict}){tail}"
    if hook == "confirm-promotion":
        if verdict == "pass":
            return 200, f"promote: {reason}{tail}"
        return 412, f"not promoting: {reason}{tail}"
    if verdict == "fail":
        return 412, f"{reason}{tail}"
    if verdict == "inconclusive" and meta.get("inconclusive", "pass") == "fail":
        return 412, f"{reason}{tail}"
    return 200, f"{reason}{tail}"


@bp.post("/v1/hooks/<hook>")
def flagger_hook(hook: str) -> Response:
    if hook not in HOOK_TYPES:
        return _text(404, "unknown", f"unknown hook type {hook!r}; use one of "
                     f"{', '.join(HOOK_TYPES)}")
    try:
        raw = read_json_object(flask_request, "Flagger's JSON payload (name, namespace, ...)")
    except BodyError as exc:
        return _text(exc.status, hook, exc.message)
    try:
        payload = FlaggerPayload.model_validate(raw)
    except ValidationError as exc:
        return _text(400, hook, validation_message(exc)[0])
    meta = payload.metadata or {}
    who = {"flagger_canary": f"{payload.namespace}/{payload.name}",
           "checksum": payload.checksum, "hook": hook}
    if hook in ("post-rollout", "event"):
        # Flagger puts an event's eventMessage and eventType in `metadata` (CallEventWebhook),
        # next to the hook's own metadata; the top level is read too for hand-made calls.
        audit({**who, "event": f"flagger_{hook}", "phase": payload.phase,
               "event_type": str(meta.get("eventType", raw.get("eventType", "")))[:50],
               "message": str(meta.get("eventMessage", raw.get("eventMessage", "")))[:500]})
        return _text(200, hook, f"{hook} noted for {payload.namespace}/{payload.name}")
    service = get_service()
    try:
        req = analysis_request(payload)
        if typo := unknown_metadata(meta, req, service.registry):
            raise AnalysisRequestError(typo, "metadata", status=412)
        if hook == "confirm-rollout":
            return _confirm_rollout(hook, req, service, who)
    except AnalysisRequestError as exc:
        exc = metadata_spelling(exc, meta)
        _audit_refusal(hook, who, meta, exc)
        return _text(exc.status, hook, exc.message)
    except SourceError as exc:
        return _text(exc.status, hook, exc.message)
    try:
        req, change = _after_revision_change(req, payload, service)
        if change is not None:
            who = {**who, "replaced_checksum": change.old, "not_before": change.since}
        result = service.analyze(req, caller="flagger", route=f"POST /v1/hooks/{hook}",
                                 audit_extra=who, change=change,
                                 gate_action="promote" if hook == "confirm-promotion" else None,
                                 gate_at=service.clock(),
                                 spelling=partial(metadata_spelling, meta=meta),
                                 wording=partial(_canary_words, change=change))
    except AnalysisRequestError as exc:
        return _text(exc.status, hook, exc.message)
    except SourceError as exc:
        return _text(exc.status, hook, exc.message)
    report = report_link(report_url(req, result.end, service.settings.public_url or ""),
                         req.config, service.settings)
    status, line = _decide(hook, result, meta, report)
    return _text(status, hook, line)


def _audit_refusal(hook: str, who: dict[str, str], meta: dict[str, str],
                   exc: AnalysisRequestError) -> None:
    """The audit line of a call refused for its metadata before any analysis ran (an
    analysis writes its own). Flagger keeps no answer of a confirm-* hook, only "waiting for
    approval", and docs/kubernetes.md sends the operator to this log for the reason: a typo in
    `approved_revision` held a promotion with no reason anywhere."""
    audit({**who, "event": "flagger_gate" if hook == "confirm-rollout" else "analysis",
           "caller": "flagger", "route": f"POST /v1/hooks/{hook}",
           "config": meta.get("config", "http")[:100], "verdict": "error",
           "status": exc.status, "reason": readable(exc.message)})


def _after_revision_change(req: AnalysisRequest, p: FlaggerPayload, service: Any
                           ) -> tuple[AnalysisRequest, Change | None]:
    """The request judged only after the moment this pod first saw the payload's checksum
    replace the one it saw before for this canary (`webhook.revisions`: Flagger restarted the
    analysis for a new revision), and that change; unchanged when this pod saw none. Confirm-
    rollout is not recorded: Flagger calls it with the previous rollout's checksum."""
    change = service.revisions.observe(p.namespace, p.name, p.checksum)
    if change is None:
        return req, None
    window = req.window.model_copy(update={"not_before": change.since})
    return req.model_copy(update={"window": window}), change
