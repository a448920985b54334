"""Nothing a caller sends can change the shape of a query."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.sources.prometheus import promql
from webhook.sources.prometheus.selectors import PROMQL


@given(st.text(min_size=1, max_size=40))
def test_quoted_values_round_trip_through_the_matcher_parser(value):
    """Whatever the value, rendered and re-parsed it is one matcher with exactly that value."""
    rendered = promql.render_selector(promql.matchers_from_labels({"app": value}, "canary"))
    (matcher,) = promql.parse_matchers(rendered, "canary")
    assert matcher.value == value and matcher.name == "app"


@pytest.mark.parametrize(("labels", "raw"), [
    ({"rollouts_pod_template_hash": "", "namespace": "shop"}, None),
    (None, 'namespace="shop", rollouts_pod_template_hash=""'),
    (None, 'rollouts_pod_template_hash=~""'),
])
def test_an_empty_label_value_is_refused_naming_the_label(labels, raw):
    """`x=""` also matches every series without label x: a mis-wired arg would make "stable"
    all unrelated traffic."""
    with pytest.raises(promql.PromQLError) as info:
        if labels is not None:
            promql.matchers_from_labels(labels, "stable")
        else:
            promql.parse_matchers(raw, "stable")
    assert info.value.field == "stable.rollouts_pod_template_hash"
    assert "empty value" in str(info.value)
    # Asking for the label's absence on purpose stays possible.
    assert promql.parse_matchers('app="a", hash!~".+"', "stable")[1].op == "!~"


@pytest.mark.parametrize("text", [
    'app="a"} or vector(1)', 'app="a",, b="c"', 'app=a', '{app="a"', 'app="a" or up',
    'app="a"}[5m]', '', 'app~"x"', 'app="a\n"',
])
def test_raw_matchers_reject_anything_but_matchers(text):
    with pytest.raises(promql.PromQLError):
        promql.parse_matchers(text, "canary")


def test_raw_matchers_accept_all_operators_and_braces():
    got = promql.parse_matchers('{app="a", pod=~"web-.*",code!="200", x!~"y\\"z"}', "canary")
    assert [(m.name, m.op, m.value) for m in got] == [
        ("app", "=", "a"), ("pod", "=~", "web-.*"), ("code", "!=", "200"), ("x", "!~", 'y"z')]


def test_vars_are_escaped_inside_quotes_and_must_be_names_outside():
    template = 'sum(rate({{metric}}{ {{selector}}, svc="{{service}}" }[{{step}}]))'
    raw = {"selector": 'app="a"', "step": "60s"}
    out = promql.render(template, {"metric": "http_requests_total", "service": 'x"} or up{'},
                        raw)
    assert out == ('sum(rate(http_requests_total{ app="a", svc="x\\"} or up{" }[60s]))')
    with pytest.raises(promql.PromQLError) as info:
        promql.render(template, {"metric": "up or vector(1)", "service": "s"}, raw)
    assert info.value.field == "vars.metric"
    with pytest.raises(promql.PromQLError) as info:
        promql.render(template, {"metric": "up"}, raw)
    assert "vars.service" in str(info.value)


def test_range_pins_are_found_outside_string_literals_and_comments():
    assert promql.range_pin("rate(x{ {{selector}} }[5m] @ start())") == "@ start()"
    assert promql.range_pin("max_over_time(x[1h] @end( ))") == "@end( )"
    assert promql.range_pin('x{a="#"} @ start()') == "@ start()"
    assert promql.range_pin("x # a comment\n@ end()") == "@ end()"
    for fine in ('x{a="@ start()"}', "x # not @ start()\n+ 1", "rate(x[5m] @ 1700000000)",
                 "rate(x[5m])"):
        assert promql.range_pin(fine) is None, fine


@pytest.mark.parametrize(("single", "backtick"), [
    ("app='web', pod=~'web-.*'", "app=`web`, pod=~`web-.*`"),
    ("{code!='5..', x!~'y\"z'}", "{code!=`5..`, x!~`y\"z`}"),
])
def test_single_quotes_and_backticks_are_read_as_prometheus_reads_them(single, backtick):
    """`app='web'` and app=`web` are PromQL Prometheus runs; they were a 400 "expected label
    matchers". Each is now the same matcher as its double-quoted spelling, so the query sent
    is the same, character for character."""
    double = single.replace("'", '"').replace('"y"z"', '"y\\"z"')
    expected = promql.parse_matchers(double, "canary")
    template = 'sum(rate(http_requests_total{ {{selector}} }[{{step}}]))'
    sent = {PROMQL.render(template, {}, PROMQL.selector(text, "canary"), 60.0, "query")
            for text in (double, single, backtick)}
    assert promql.parse_matchers(single, "canary") == expected
    assert promql.parse_matchers(backtick, "canary") == expected
    assert len(sent) == 1, sent


def test_single_quoted_and_raw_values_cannot_break_out_of_their_matcher():
    """A quote inside the value stays part of the value: `\\'` escapes in single quotes, a
    backslash is literal in backticks, and what follows a closing quote must be a matcher."""
    (single,) = promql.parse_matchers("app='x\\'} or vector(1) #'", "canary")
    assert single.value == "x'} or vector(1) #"
    assert single.render() == "app=\"x'} or vector(1) #\""
    (raw,) = promql.parse_matchers('app=`x"} or vector(1) or up{a="\\`', "canary")
    assert raw.value == 'x"} or vector(1) or up{a="\\'
    assert raw.render() == 'app="x\\"} or vector(1) or up{a=\\"\\\\"'
    for text in ("app='x'} or vector(1)", "app=`x`} or vector(1)", "app='x\\'",
                 "app=`x\\``", "app='x\"", "app=`x'", "app='a\n'"):
        with pytest.raises(promql.PromQLError):
            promql.parse_matchers(text, "canary")


@pytest.mark.parametrize("text", ["hash=''", "hash=``", "hash=~''"])
def test_an_empty_value_in_any_quotes_is_refused(text):
    with pytest.raises(promql.PromQLError) as info:
        promql.parse_matchers(text, "stable")
    assert info.value.field == "stable.hash" and "empty value" in str(info.value)


@pytest.mark.parametrize("text", ["pod=~'web-('", "pod=~`web-(`"])
def test_a_bad_regex_in_any_quotes_is_refused_naming_the_matcher(text):
    with pytest.raises(promql.PromQLError) as info:
        promql.parse_matchers(text, "canary")
    assert info.value.field == "canary.pod" and "regular expression" in str(info.value)
