"""Safe construction of PromQL from config templates and caller-supplied values.

Callers (Argo args, Flagger metadata, curl) choose label values, never query text. Everything
they send reaches a query only through this module: label names are checked against the
Prometheus grammar, values are escaped as PromQL string literals, and a raw matcher string is
parsed into matchers and re-rendered, so `app="x"} or vector(1) #` cannot survive.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from webhook.sources.base import QueryLanguageError

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
# A matcher's value in any of PromQL's three string literals: "…" and '…' with backslash
# escapes, `…` raw (no escapes, newlines allowed). Exactly one of the three value groups is set.
_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*'
    r'(?:"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'|`([^`]*)`)\s*(,|$)')
_OPS = ("=", "!=", "=~", "!~")
# what a caller meant as a matcher's label name, valid or not: up to its operator
_NAMED = re.compile(r"""\s*([^\s=!~"'`,{}]+)\s*(?:=~|!~|!=|=)""")
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_]")
# PromQL's comparison operator written as a matcher's: `app=="web"`
_DOUBLE_EQUALS = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*==\s*("(?:[^"\\\n]|\\.)*")?')
# Words the PromQL lexer reads as keywords or numbers, never as a metric name: a var set to one
# of them would make Prometheus reject the query, which is the caller's mistake (400), not ours.
KEYWORDS = frozenset({
    "and", "or", "unless", "atan2", "bool", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "start", "end", "nan", "inf",
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
    "count_values", "quantile", "limitk", "limit_ratio"})


class PromQLError(QueryLanguageError):
    """A caller-supplied piece cannot be placed into PromQL safely; becomes a 400."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def render(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


def quote(value: str) -> str:
    """A PromQL double-quoted string literal whose content is exactly `value`."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _unescape(body: str) -> str:
    out: list[str] = []
    chars = iter(body)
    table = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append(table.get(nxt, "\\" + nxt))
        else:
            out.append(ch)
    return "".join(out)


def parse_matchers(text: str, field: str) -> tuple[Matcher, ...]:
    """Parse `a="x", b=~"y.*"` (braces optional) into matchers, rejecting anything else.

    Values may be quoted as Prometheus allows: "x", 'x' (same escapes) or `x` (raw), since
    callers copy selectors from PromQL they already run. Every spelling becomes the same
    Matcher, so rendering (always double-quoted) and every check below see no difference."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body) and body[pos:].strip():
        match = _MATCHER.match(body, pos)
        if match is None:
            if (named := _NAMED.match(body, pos)) and not LABEL_NAME.fullmatch(named[1]):
                raise _invalid_name(named[1], field)
            if (doubled := _DOUBLE_EQUALS.match(body, pos)) is not None:
                raise _double_equals(doubled[1], doubled[2], field)
            raise PromQLError(
                f"{field}: expected label matchers like app=\"web\" or pod=~\"web-.*\", "
                f"could not parse near {body[pos:pos + 30]!r}", field)
        name, op, double, single, backtick, _ = match.groups()
        _check_label_name(name, field)
        value = backtick if backtick is not None else _unescape(
            double if double is not None else single)
        if op in ("=", "=~") and value == "":
            raise _empty_value(field, name)
        if op in ("=~", "!~"):
            _check_regex(value, field, name)
        matchers.append(Matcher(name, op, value))
        pos = match.end()
    if not matchers:
        raise PromQLError(f"{field}: no label matchers given", field)
    return tuple(matchers)


def matchers_from_labels(labels: Mapping[str, object], field: str) -> tuple[Matcher, ...]:
    """`{"app": "web"}` → equality matchers; label names must be valid Prometheus names."""
    if not labels:
        raise PromQLError(f"{field}: give at least one label, e.g. {{\"app\": \"web\"}}", field)
    out = []
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(str(name)):
            raise _invalid_name(str(name), field)
        _check_label_name(str(name), field)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise PromQLError(f"{field}.{name}: label value must be a string", field)
        if str(value) == "":
            raise _empty_value(field, str(name))
        out.append(Matcher(str(name), "=", str(value)))
    return tuple(out)


def stored_label_name(name: str) -> str | None:
    """The name Prometheus' Kubernetes discovery stores for a label it cannot hold as written
    (`rollouts-pod-template-hash` as `rollouts_pod_template_hash`: every other character
    turned into `_`), or None when `name` needs no change or no change makes it valid."""
    fixed = _NOT_IN_NAME.sub("_", name)
    return fixed if fixed != name and LABEL_NAME.fullmatch(fixed) else None


def _invalid_name(name: str, field: str) -> PromQLError:
    """A label name Prometheus cannot hold, most often a Kubernetes label as the pod carries it
    (`rollouts-pod-template-hash`, `app.kubernetes.io/name`): the name Prometheus stores for
    it is the fix."""
    message = f"{field}: {name!r} is not a valid Prometheus label name"
    if fixed := stored_label_name(name):
        message += (f"; in Prometheus, Kubernetes' label {name} is {fixed} (every character "
                    "but letters, digits and _ becomes _)")
    else:
        message += " (letters, digits and _, not starting with a digit)"
    return PromQLError(message, field)


def _double_equals(name: str, quoted: str | None, field: str) -> PromQLError:
    """`app=="web"`: `==` compares values in PromQL, and people who write queries type it as
    a matcher too. "could not parse" left them staring at a selector that looked right."""
    example = f"{name}={quoted}" if quoted else f'{name}="…"'
    return PromQLError(f"{field}.{name}: use = (or =~), not ==, in a label matcher: {example}",
                       f"{field}.{name}")


def _empty_value(field: str, name: str) -> PromQLError:
    """`label=""` also matches every series WITHOUT that label: a mis-wired arg would turn
    "stable" into all unrelated traffic. Absence must be asked for on purpose (`!~".+"`)."""
    return PromQLError(
        f"{field}.{name}: empty value; it would match every series without label {name} "
        "(check the arg or var that should fill it)", f"{field}.{name}")


# Python's compile errors that Go's regexp/syntax (Prometheus' matchers) raises too; other
# Python errors are not checked, as Go accepts much that Python refuses (\pL, (?i) midway).
_REGEX_ERRORS = ("missing ), unterminated subpattern", "unbalanced parenthesis",
                 "unterminated character set", "nothing to repeat", "multiple repeat",
                 "bad character range", "bad escape (end of pattern)",
                 "min repeat greater than max repeat")


_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_COUNT_ENDS = re.compile(r"\{\d+(?:,\d*)?\}$")
_MAX_REPEAT = 1000  # Go's regexp/syntax refuses a larger count


def _check_regex(value: str, field: str, name: str) -> None:
    """A regex Prometheus cannot compile is the caller's mistake (400 naming the matcher),
    not a metrics source that rejects our query (502, which a controller retries until its
    error limit). Prometheus compiles the pattern as given before anchoring it, so a `)`
    closing its anchor group is refused too."""
    def refuse(why: str) -> PromQLError:
        return PromQLError(f"{field}.{name}: {value[:60]!r} is not a valid regular expression "
                           f"({why}); escape characters meant literally, e.g. \\(",
                           f"{field}.{name}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning for [[:alpha:]], valid in Go
        try:
            re.compile(value)
        except re.error as exc:
            if exc.msg.startswith(_REGEX_ERRORS) and not _go_takes(value, exc):
                raise refuse(exc.msg) from None
        except (RecursionError, OverflowError):  # nested past Python's limits, and Go's
            raise refuse("nested too deeply") from None
    if why := _not_go(value):
        raise refuse(why)


_ASSERTIONS = ("^", "$", "\\b", "\\B", "\\A")
_CLASS_ESCAPE = re.compile(r"bad character range \\[dDsSwW]-")


def _go_takes(value: str, exc: re.error) -> bool:
    """The few Python errors of `_REGEX_ERRORS` Go does not share: Go repeats an assertion
    (`^*`, `$+`, `\\b?`) and reads `[\\d-z]` as a class, `-` and `z` (Python: "nothing to
    repeat", "bad character range")."""
    if exc.msg.startswith("nothing to repeat") and exc.pos is not None:
        return value[:exc.pos].endswith(_ASSERTIONS)
    return _CLASS_ESCAPE.match(exc.msg) is not None


def _not_go(value: str) -> str | None:
    """What Python (3.11+) compiles and Go does not, outside character classes and escapes
    (where `{1001}` or `*+` are literal): a repeat count above 1000, a possessive quantifier
    (`a*+`) or an atomic group (`(?>…)`)."""
    i, in_class = 0, False
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 1
            if value[i:i + 1] == "^":
                i += 1
            if value[i:i + 1] == "]":  # a leading ] is literal
                i += 1
            continue
        elif ch == "{" and (count := _REPEAT.match(value, i)) and any(
                n and int(n) > _MAX_REPEAT for n in count.groups()):
            return f"repeat count above {_MAX_REPEAT}"
        elif value.startswith("(?>", i):
            return "atomic groups (?>…) are not Go syntax"
        elif ch in "*+?" and value[i + 1:i + 2] == "+" and i > 0 and value[i - 1] != "(":
            return f"possessive quantifier {ch}+ is not Go syntax"
        elif ch == "}" and value[i + 1:i + 2] == "+" and _COUNT_ENDS.search(value, 0, i + 1):
            return "possessive quantifier }+ is not Go syntax"
        i += 1
    return None


# Go's regexp/syntax error as Prometheus passes it on: "…error parsing regexp: <what>: `<the
# part>`" (the part may be cut short by the error text's trim).
_GO_REGEX_ERROR = re.compile(r"error parsing regexp: ([^`]*?):? `(.*?)(?:`|…)?$")
_ANCHORED = re.compile(r"^\^\(\?:(.*)\)\$$", re.DOTALL)


def rejected_regex(rejection: str, sides: Mapping[str, Mapping[str, str] | str],
                   vars_: Mapping[str, str]) -> PromQLError | None:
    """The caller's regex Prometheus refused to compile, as the 400 naming it.

    `_check_regex` refuses what Python's `re` and Go's regexp/syntax both refuse before
    anything is sent; Go refuses more (lookarounds, backreferences, `\\Z`, `(?x)`, nested
    counts above 1000 copies, unknown classes), and only Prometheus' own compile knows all of
    it. Its error quotes the offending part: the first of the caller's regex matcher values
    (then vars, which a config may place in a regex) holding that part is the one to fix. A
    part found in none of them is a config's regex, and its 502 stands."""
    found = _GO_REGEX_ERROR.search(rejection)
    if found is None:
        return None
    why, part = found.group(1), found.group(2)
    if anchored := _ANCHORED.match(part):  # Prometheus compiles ^(?:<value>)$
        part = anchored.group(1)
    if not part:
        return None
    candidates: list[tuple[str, str]] = []
    for side, given in sides.items():
        if isinstance(given, str):
            try:
                matchers = parse_matchers(given, side)
            except PromQLError:
                continue
            candidates += [(f"{side}.{m.name}", m.value) for m in matchers
                           if m.op in ("=~", "!~")]
    candidates += [(f"vars.{name}", str(value)) for name, value in vars_.items()]
    # a part at the value's end may carry the `)` that closes Prometheus' anchor group
    trimmed = part.removesuffix(")$").removesuffix(")") or part
    for field, value in candidates:
        if part in value or trimmed in value:
            return PromQLError(
                f"{field}: {value[:60]!r} is not a valid regular expression for Prometheus "
                f"({why}: {part[:40]!r}); escape characters meant literally, e.g. \\(, and "
                "use RE2 syntax (no lookarounds or backreferences)", field)
    return None


def _check_label_name(name: str, field: str) -> None:
    if name.startswith("__"):
        raise PromQLError(f"{field}: label names starting with __ (such as __name__) are "
                          "reserved by Prometheus; select the series by their own labels", field)


def render_selector(matchers: tuple[Matcher, ...]) -> str:
    """Matchers as they go inside `{…}` of a vector selector."""
    return ", ".join(m.render() for m in matchers)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


@lru_cache(maxsize=1024)
def _quoted_spans(template: str) -> tuple[tuple[int, int], ...]:
    """Character spans of PromQL string literals ("…", '…', `…`) in a template (remembered:
    the same few config templates are rendered for every analysis)."""
    spans = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch in "\"'`":
            j = i + 1
            while j < len(template) and template[j] != ch:
                j += 2 if template[j] == "\\" and ch != "`" else 1
            spans.append((i, j))
            i = j + 1
        else:
            i += 1
    return tuple(spans)


def _inside(spans: tuple[tuple[int, int], ...], pos: int) -> bool:
    """Whether `pos` lies within one of `_quoted_spans`' string literals."""
    return any(a < pos < b for a, b in spans)


def render(template: str, values: Mapping[str, str], raw: Mapping[str, str],
           field: str = "query") -> str:
    """Fill `{{name}}` placeholders.

    `raw` values are trusted, already-rendered PromQL (the side's selector, the step). Every
    other value comes from a caller: inside a string literal it is escaped; outside one it must
    be a bare identifier (a metric or label name), which cannot change the query's shape.
    """
    spans = _quoted_spans(template)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in raw:
            return raw[name]
        if name not in values:
            raise PromQLError(
                f"{field}: the query needs a value for {{{{{name}}}}}; pass it in vars.{name}",
                f"vars.{name}")
        value = str(values[name])
        if _inside(spans, match.start()):
            return quote(value)[1:-1]
        if not IDENTIFIER.fullmatch(value):
            raise PromQLError(
                f"vars.{name}: {value[:60]!r} is placed in the query as a name, so it must "
                "match [a-zA-Z_:][a-zA-Z0-9_:]*", f"vars.{name}")
        if value.lower() in KEYWORDS or value.startswith("__"):
            raise PromQLError(
                f"vars.{name}: {value!r} is a PromQL keyword or reserved name and cannot be "
                "placed in the query as a name", f"vars.{name}")
        return value

    return _PLACEHOLDER.sub(substitute, template)


# `@ start()` / `@ end()`: evaluation pinned to the range query's own start or end.
_RANGE_PIN = re.compile(r"@\s*(start|end)\s*\(\s*\)")


def range_pin(template: str) -> str | None:
    """The `@ start()` or `@ end()` a template uses outside string literals and comments, or
    None. They resolve to the bounds of each range request, and the judge's requests are not
    the window: a repeated poll reads only the steps it has not settled yet, and a sequential
    one starts at the stable's history before the rollout. So every step's value would move
    with the cache and the poll instead of being the step's own."""
    quoted = _quoted_spans(template)
    comments = [(at, len(template) if (end := template.find("\n", at)) < 0 else end)
                for at in (i for i, ch in enumerate(template) if ch == "#")
                if not _inside(quoted, at)]
    for match in _RANGE_PIN.finditer(template):
        at = match.start()
        if not _inside(quoted, at) and not any(a <= at < b for a, b in comments):
            return match.group(0)
    return None


def activity(parts: Sequence[tuple[str, bool]]) -> str:
    """`count(…)` of the parts' samples that show traffic: a count is present at a step iff
    some part has a sample there that is finite and (for a counter, `True`) above 0.

    Comparisons without `bool` filter: `x > 0 < +Inf` keeps finite values above 0 (NaN fails
    every comparison), `x > -Inf < +Inf` every finite value. `or` keeps any part's samples, and
    `count` makes them one series. Each part sits on lines of its own inside parentheses, so a
    `#` comment in a config's query cannot swallow what follows it.
    """
    if not parts:
        raise ValueError("activity needs at least one query")
    terms = [f"((\n{expr}\n) {'> 0' if counts else '> -Inf'} < +Inf)"
             for expr, counts in dict.fromkeys(parts)]
    return "count(\n" + "\nor\n".join(terms) + "\n)"


def tagged_union(exprs: Sequence[str], label: str) -> str:
    """One query answering every expression of `exprs`, each series tagged with `label` set
    to its expression's index, so one round trip and one evaluation replace several.

    `label_replace(e, label, "i", "", "")` adds the tag (the empty regex matches the empty
    source label of every series) and keeps everything else, `__name__` included; `or` keeps
    every series of every part, since no two parts share a tag. A part that is not an instant
    vector (a scalar, a string) makes Prometheus reject the whole query: the caller then asks
    the parts one by one. Each part sits on lines of its own, so a `#` comment in a config's
    query cannot swallow what follows it.
    """
    if not exprs:
        raise ValueError("tagged_union needs at least one query")
    if not LABEL_NAME.fullmatch(label):
        raise ValueError(f"{label!r} is not a label name")
    return "\nor\n".join(f'label_replace(\n{expr}\n, "{label}", "{i}", "", "")'
                         for i, expr in enumerate(exprs))
