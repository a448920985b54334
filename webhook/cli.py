"""`canary-judge`: serve the webhook, or judge one canary from a terminal.

`analyze` exits 0 on pass, 1 on fail, 2 on inconclusive and 3 when it could not judge (a command
line it cannot read included), so it can gate a CI job or a script as well as a rollout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}
EXIT_ERROR = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a command line it cannot read exits EXIT_ERROR: its own status 2 is
    `analyze`'s "inconclusive", which a script gating on the exit code would take as judged."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. namespace=shop)")
    return name, value


def _serve(args: argparse.Namespace) -> int:
    conf = resources.files("webhook") / "gunicorn_conf.py"
    os.environ["CANARY_JUDGE_BIND"] = f"{args.host}:{args.port}"
    if args.workers:
        os.environ["CANARY_JUDGE_WORKERS"] = str(args.workers)
    if args.threads:
        os.environ["CANARY_JUDGE_THREADS"] = str(args.threads)
    os.execvp(sys.executable,
              [sys.executable, "-m", "gunicorn", "--config", str(conf), "webhook.wsgi:app"])
    return 0  # not reached


def _labels_or_matchers(value: str) -> object:
    """`app="web"` stays a matcher string; `{"app": "web"}` (JSON) becomes labels."""
    text = value.strip()
    if text.startswith("{") and text.endswith("}") and ":" in text:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


_FLAGS = {"window.start": "--start", "window.end": "--end", "window.lookback": "--lookback",
          "window.step": "--step", "window.warmup": "--warmup", "mode": "--mode",
          "alpha": "--alpha", "config": "--config", "provider": "--provider"}


def _flag(field: str) -> str:
    """The option a request field came from, as a prefix: the person typed `--step`, and the
    message names `window.step` as the HTTP API does."""
    side = field.partition(".")[0]
    flag = _FLAGS.get(field) or ({"canary": "--canary", "stable": "--stable",
                                  "vars": "--var"}.get(side))
    return f"{flag}: " if flag else ""


def _without_userinfo(url: str) -> str:
    """`url` without a user:password@ it may carry, fit to print."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _analyze(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from webhook.analysis import AnalysisRequestError, Policy, run_analysis
    from webhook.api.answer import answer_body
    from webhook.api.common import validation_message
    from webhook.configs import load_registry
    from webhook.models import AnalysisRequest
    from webhook.render import verdict_text
    from webhook.resolve import side_selectors
    from webhook.settings import load_settings
    from webhook.sources import SourceError, SourceUnavailable, make_source, query_language

    overrides = {"prometheus_url": args.prometheus_url} if args.prometheus_url else {}
    settings = load_settings(**overrides, allow_inline_queries=True)
    registry = load_registry(settings.config_dir)
    for source, error in registry.errors.items():
        print(f"warning: config {source}: {error}", file=sys.stderr)
    body: dict[str, object] = {
        "config": args.config, "canary": _labels_or_matchers(args.canary),
        "stable": _labels_or_matchers(args.stable),
        "vars": dict(args.var),
        "window": {k: getattr(args, k) for k in ("start", "end", "lookback", "step", "warmup")
                   if getattr(args, k) is not None},
    }
    if args.mode:
        body["mode"] = args.mode
    if args.alpha:
        body["alpha"] = args.alpha
    if args.provider:
        body["provider"] = args.provider
    policy = Policy.from_settings(settings)
    try:
        request = AnalysisRequest.model_validate(body)
        language = query_language(settings.metrics_source)
        result = run_analysis(request, registry, make_source(settings, cached=False), policy,
                              language=language, traces=not args.json)  # the table's units
    except ValidationError as exc:
        message, field = validation_message(exc)
        print(f"error: {_flag(field)}{message}", file=sys.stderr)
        return EXIT_ERROR
    except SourceUnavailable as exc:
        # the one thing to fix from a terminal is usually where it looked
        print(f"error: {exc} at {_without_userinfo(settings.prometheus_url)}; give the right "
              "one with --prometheus-url or CANARY_JUDGE_PROMETHEUS_URL", file=sys.stderr)
        return EXIT_ERROR
    except (AnalysisRequestError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    verdict = answer_body(result)
    text = (json.dumps(verdict, indent=2) if args.json else
            verdict_text(verdict, result.checks, side_selectors(request, language)))
    print(text, end="")
    return EXIT_CODES[str(verdict["verdict"])]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="canary-judge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the HTTP service under gunicorn")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=None)
    serve.add_argument("--threads", type=int, default=None)
    serve.set_defaults(func=_serve)

    analyze = sub.add_parser("analyze", help="judge one canary and print the verdict")
    analyze.add_argument("--config", default="http")
    analyze.add_argument("--canary", required=True,
                         help='matchers, e.g. rollouts_pod_template_hash="7d9f", or JSON labels')
    analyze.add_argument("--stable", required=True)
    analyze.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                         type=_name_value)
    analyze.add_argument("--start")
    analyze.add_argument("--end")
    analyze.add_argument("--lookback")
    analyze.add_argument("--step")
    analyze.add_argument("--warmup", help="left out at the start of a found rollout, e.g. 2m")
    analyze.add_argument("--mode", choices=["fixed", "sequential"])
    analyze.add_argument("--alpha")
    analyze.add_argument("--provider", choices=["app", "istio", "linkerd", "pod"],
                         help="a mesh's own metric names, as a report link's provider=")
    analyze.add_argument("--prometheus-url", help="default: $CANARY_JUDGE_PROMETHEUS_URL")
    analyze.add_argument("--json", action="store_true", help="print the JSON verdict")
    analyze.set_defaults(func=_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
