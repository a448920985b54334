"""`POST /v1/gates`: the config's deployment gates alone, for an Argo metric of their own.

Argo counts a metric's Inconclusive measurements against `inconclusiveLimit` and calls the run
Successful once `count` is reached within that limit. An analysis metric needs a few
inconclusives allowed (low data early on), so a market session opening at its last
measurements would not stop the promotion. A second metric reading only the gates, with
`inconclusiveLimit: 0`, makes any closed gate pause the rollout: it holds, never aborts.
No metrics are queried; the answer is always 200 with `gate` "open" or "closed" for a valid
request (a gate never fails, so a template's failureCondition never matches it).
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from webhook.analysis import AnalysisRequestError, evaluate_gates
from webhook.api.body import BodyError, read_json_object
from webhook.api.common import (
    bearer_ok,
    error_response,
    get_service,
    unauthorized,
    validation_message,
)
from webhook.models import AnalysisRequest
from webhook.observability import audit
from webhook.timefmt import rfc3339_seconds

bp = Blueprint("gates", __name__)

_ACTIONS = ("promote", "start")


@bp.post("/v1/gates")
def gates_post() -> Response:
    service = get_service()
    if not bearer_ok(service.settings):
        return unauthorized()
    action = request.args.get("action", "promote")
    if action not in _ACTIONS:
        return error_response(400, f"action: {action!r} is not one of promote (an Argo "
                              "measurement: may the rollout go on now?), start", "action")
    try:
        payload = read_json_object(request, "a JSON object (the analysis request)")
        req = AnalysisRequest.model_validate(payload)
        now = time.time()
        checks = evaluate_gates(req, service.registry, action, now, language=service.language)
    except BodyError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except ValidationError as exc:
        message, field = validation_message(exc)
        return error_response(400, message, field)
    except AnalysisRequestError as exc:
        return error_response(exc.status, exc.message, exc.field)
    held = [c for c in checks if c.verdict != "pass"]
    gate = "closed" if held else "open"
    reason = ("; ".join(c.reason for c in (held or checks))
              or f"config {req.config} has no gates")
    at = req.window.end if req.window.end is not None else now
    audit({"event": "gates", "config": req.config, "action": action, "gate": gate,
           "reason": reason, "route": "POST /v1/gates"})
    return jsonify({
        "gate": gate, "reason": f"{gate}: {reason}", "config": req.config, "action": action,
        "at": rfc3339_seconds(at),
        "checks": [{"name": c.name, "verdict": c.verdict, "reason": c.reason}
                   for c in checks]})
