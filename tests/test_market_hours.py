"""Market-hours gate: risky rollouts wait for closed exchanges, in each exchange's own time zone.

Instants are chosen so that time zones matter: between 2026-03-08 (US DST starts) and
2026-03-29 (EU DST starts) New York is 4 h behind Frankfurt instead of 6 h.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from webhook.gates import (
    ExchangeSession,
    MarketHoursConfig,
    decide,
    open_sessions,
)
from webhook.gates.market_hours import HORIZON

NY = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def names(config: MarketHoursConfig, at: datetime) -> list[str]:
    return [session.name for session in open_sessions(config, at)]


def new_york(**overrides: object) -> ExchangeSession:
    fields: dict[object, object] = {
        "name": "New York",
        "timezone": "America/New_York",
        "open": "09:30",
        "close": "16:00",
    }
    return ExchangeSession.model_validate(fields | overrides)


DEFAULT = MarketHoursConfig()
NY_ONLY = MarketHoursConfig(sessions=[new_york()])


def test_defaults_follow_product_md() -> None:
    hours = {s.name: (s.timezone, s.open, s.close, s.weekdays) for s in DEFAULT.sessions}
    weekdays = [0, 1, 2, 3, 4]
    assert hours == {
        "New York": ("America/New_York", time(9, 30), time(16), weekdays),
        "Frankfurt": ("Europe/Berlin", time(9), time(17, 30), weekdays),
        "Tokyo": ("Asia/Tokyo", time(9), time(15, 30), weekdays),
    }


def test_default_sessions_hold_medium_until_the_real_close() -> None:
    """A config that lists no sessions gets the exchanges' real hours: with Tokyo's old 15:00
    close a medium change was promoted during the TSE's last half hour (New York and Frankfurt
    closed), and Frankfurt's 16:30 called Xetra's last hour closed."""
    at = utc("2026-03-10T06:15")  # Tuesday 15:15 JST, 07:15 CET, 02:15 EDT
    decision = decide(DEFAULT, "medium", "promote", at)
    assert not decision.allowed and names(DEFAULT, at) == ["Tokyo"]
    assert "Tokyo session open (09:00–15:30 Asia/Tokyo" in decision.reason
    assert decision.next_window == utc("2026-03-10T06:30")

    frankfurt = MarketHoursConfig(sessions=[s for s in DEFAULT.sessions if s.name == "Frankfurt"])
    assert names(frankfurt, utc("2026-03-09T16:15")) == ["Frankfurt"]  # 17:15 CET
    assert names(frankfurt, utc("2026-07-06T15:29")) == ["Frankfurt"]  # 17:29 CEST
    assert names(frankfurt, utc("2026-07-06T15:30")) == []


def test_new_york_open_in_us_dst_change_week_blocks_medium_and_names_the_session() -> None:
    at = utc("2026-03-10T13:45")  # Tuesday, 09:45 EDT (US DST began Sunday 2026-03-08)
    assert at.astimezone(NY).strftime("%H:%M %Z") == "09:45 EDT"

    decision = decide(DEFAULT, "medium", "start", at)

    assert not decision.allowed and not decision.needs_approval
    assert "New York" in [s.name for s in decision.open_sessions]
    assert "New York session open (09:30–16:00 America/New_York, closes 16:00 EDT, 2026-03-10)" in (
        decision.reason
    )
    assert "risk_tolerance medium may start only while all sessions are closed" in decision.reason
    assert "\n" not in decision.reason


def test_same_utc_instant_a_week_earlier_is_before_new_york_open() -> None:
    at = utc("2026-03-03T13:45")  # 08:45 EST: New York not open yet, Frankfurt (14:45 CET) is
    assert at.astimezone(NY).strftime("%H:%M %Z") == "08:45 EST"

    assert names(DEFAULT, at) == ["Frankfurt"]
    assert decide(NY_ONLY, "medium", "start", at).allowed
    assert not decide(NY_ONLY, "medium", "start", utc("2026-03-10T13:45")).allowed


@pytest.mark.parametrize(
    ("day", "opens_utc", "closes_utc"),
    [
        ("2026-01-07", "14:30", "21:00"),  # EST, UTC-5
        ("2026-07-01", "13:30", "20:00"),  # EDT, UTC-4
    ],
)
def test_new_york_wall_clock_hours_follow_dst(day: str, opens_utc: str, closes_utc: str) -> None:
    opens, closes = utc(f"{day}T{opens_utc}"), utc(f"{day}T{closes_utc}")

    assert names(NY_ONLY, opens - timedelta(microseconds=1)) == []
    (session,) = open_sessions(NY_ONLY, opens)
    assert (session.opened_at, session.closes_at) == (opens, closes)
    assert session.opened_at.tzinfo is UTC
    assert names(NY_ONLY, closes - timedelta(microseconds=1)) == ["New York"]
    assert names(NY_ONLY, closes) == []


def test_tokyo_has_no_dst() -> None:
    tokyo = MarketHoursConfig(sessions=[s for s in DEFAULT.sessions if s.name == "Tokyo"])
    for day in ("2026-01-07", "2026-07-01"):  # 09:00–15:30 JST is 00:00–06:30Z all year
        assert names(tokyo, utc(f"{day}T00:00")) == ["Tokyo"]
        assert names(tokyo, utc(f"{day}T06:29")) == ["Tokyo"]
        assert names(tokyo, utc(f"{day}T06:30")) == []


@pytest.mark.parametrize(
    "instant",
    [
        "2026-03-13T21:00",  # Friday 17:00 EDT, after New York's close
        "2026-03-14T15:00",  # Saturday
        "2026-03-15T15:00",  # Sunday
        "2026-03-16T06:30",  # Monday: Tokyo closed (15:30 JST), Frankfurt not open (07:30 CET)
    ],
)
def test_weekend_and_gaps_between_sessions_allow_medium(instant: str) -> None:
    decision = decide(DEFAULT, "medium", "start", utc(instant))
    assert decision.allowed
    assert decision.open_sessions == ()
    assert decision.next_window == utc(instant)
    assert "no exchange session open" in decision.reason


def test_holiday_closes_the_exchange_all_day() -> None:
    at = utc("2026-07-03T16:00")  # Friday 12:00 EDT; Frankfurt 18:00 CEST and Tokyo are closed
    observed_independence_day = new_york(holidays=["2026-07-03"])
    config = MarketHoursConfig(
        sessions=[observed_independence_day, *DEFAULT.sessions[1:]],
    )

    assert not decide(DEFAULT, "medium", "start", at).allowed
    decision = decide(config, "medium", "start", at)
    assert decision.allowed and decision.open_sessions == ()


def test_half_day_closes_early() -> None:
    config = MarketHoursConfig(
        sessions=[new_york(half_days={"2026-11-27": "13:00"}), *DEFAULT.sessions[1:]],
    )
    during = decide(config, "medium", "start", utc("2026-11-27T17:30"))  # 12:30 EST
    after = decide(config, "medium", "start", utc("2026-11-27T18:30"))  # 13:30 EST

    assert not during.allowed
    assert "09:30–13:00 America/New_York half day, closes 13:00 EST" in during.reason
    assert during.next_window == utc("2026-11-27T18:00")
    assert after.allowed
    assert not decide(DEFAULT, "medium", "start", utc("2026-11-27T18:30")).allowed


def test_next_window_is_the_latest_close_of_overlapping_sessions() -> None:
    at = utc("2026-03-10T15:00")  # New York 11:00 EDT and Frankfurt 16:00 CET both open

    decision = decide(DEFAULT, "high", "promote", at)

    assert names(DEFAULT, at) == ["New York", "Frankfurt"]
    assert decision.next_window == utc("2026-03-10T20:00")  # New York's 16:00 EDT close
    assert decision.reason.endswith("next allowed from 2026-03-10T20:00Z")
    assert "risk_tolerance high may be promoted only while all sessions are closed" in (
        decision.reason
    )


def test_next_window_skips_a_session_that_opens_as_another_closes() -> None:
    config = MarketHoursConfig(
        sessions=[
            ExchangeSession(name="A", timezone="UTC", open="08:00", close="12:00"),
            ExchangeSession(name="B", timezone="Asia/Kolkata", open="17:30", close="19:30"),
        ]
    )  # B is 12:00–14:00Z: A's close is not a window, B's is
    decision = decide(config, "medium", "start", utc("2026-03-10T09:00"))
    assert decision.next_window == utc("2026-03-10T14:00")


def test_next_window_late_local_close_falls_on_the_next_utc_day() -> None:
    friday = utc("2026-03-13T19:00")  # Friday 15:00 EDT; closes 23:59 EDT
    config = MarketHoursConfig(sessions=[new_york(open="00:00", close="23:59")])
    assert decide(config, "medium", "start", friday).next_window == utc("2026-03-14T03:59")


def test_next_window_at_a_close_inside_the_skipped_dst_hour() -> None:
    night = new_york(name="Night", open="01:00", close="02:30", weekdays=["sun"])
    config = MarketHoursConfig(sessions=[night])
    at = utc("2026-03-08T06:30")  # 01:30 EST; at 07:00Z the clock jumps 02:00 EST -> 03:00 EDT
    assert names(config, at) == ["Night"]
    assert decide(config, "medium", "start", at).next_window == utc("2026-03-08T07:00")


def test_low_may_proceed_while_sessions_are_open() -> None:
    at = utc("2026-03-10T13:45")
    for action in ("start", "promote"):
        decision = decide(DEFAULT, "low", action, at)
        assert decision.allowed and not decision.needs_approval
        assert "New York session open" in decision.reason
        assert decision.next_window == at


def test_critical_always_needs_a_person() -> None:
    closed, trading = utc("2026-03-14T15:00"), utc("2026-03-10T13:45")

    for at in (closed, trading):
        decision = decide(DEFAULT, "critical", "promote", at)
        assert not decision.allowed and decision.needs_approval
        assert decision.next_window is None
        assert "approved=true" in decision.reason and "person" in decision.reason

    assert decide(DEFAULT, "critical", "promote", closed, approved=True).allowed
    approved_in_hours = decide(DEFAULT, "critical", "promote", trading, approved=True)
    assert not approved_in_hours.allowed and not approved_in_hours.needs_approval
    assert approved_in_hours.next_window == utc("2026-03-10T20:00")
    assert "critical (approved) may be promoted only while all sessions are closed" in (
        approved_in_hours.reason
    )


def test_any_aware_timezone_gives_the_same_answer() -> None:
    at = utc("2026-03-10T13:45")
    elsewhere = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert decide(DEFAULT, "medium", "start", elsewhere) == decide(DEFAULT, "medium", "start", at)


def test_naive_instant_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        open_sessions(DEFAULT, datetime(2026, 3, 10, 13, 45))
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(DEFAULT, "low", "start", datetime(2026, 3, 10, 13, 45))


def test_unknown_risk_tolerance_or_action_is_rejected() -> None:
    at = utc("2026-03-10T13:45")
    with pytest.raises(ValueError, match="risk_tolerance 'extreme'"):
        decide(DEFAULT, "extreme", "start", at)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action 'rollback'"):
        decide(DEFAULT, "low", "rollback", at)  # type: ignore[arg-type]


def test_close_before_open_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        new_york(open="16:00", close="09:30")
    (error,) = caught.value.errors()
    assert error["loc"] == ("close",)
    assert "after open" in error["msg"]


def test_unknown_timezone_names_it() -> None:
    with pytest.raises(ValidationError, match="Mars/Olympus_Mons") as caught:
        new_york(timezone="Mars/Olympus_Mons")
    assert caught.value.errors()[0]["loc"] == ("timezone",)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weekdays": ["mon", "Funday"]}, "unknown weekday 'Funday'"),
        ({"weekdays": [7]}, "weekday 7 out of range"),
        ({"half_days": {"2026-11-27": "17:00"}}, "half day 2026-11-27"),
        ({"holidays": ["2026-11-27"], "half_days": {"2026-11-27": "13:00"}}, "both holiday"),
        ({"open": "09:30+01:00"}, "without offset"),
        ({"exchange": "NYSE"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_session_config(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        new_york(**overrides)


def test_weekday_names_are_accepted() -> None:
    assert new_york(weekdays=["Sun", "mon", "friday", 2, "mon"]).weekdays == [0, 2, 4, 6]


def test_config_needs_distinct_named_sessions() -> None:
    with pytest.raises(ValidationError, match="unique"):
        MarketHoursConfig(sessions=[new_york(), new_york()])
    with pytest.raises(ValidationError):
        MarketHoursConfig(sessions=[])


# --- property: `low` is never blocked; medium is blocked exactly when a session is open ---

ZONES = st.sampled_from(
    [
        "UTC",
        "America/New_York",
        "America/Sao_Paulo",
        "America/St_Johns",
        "Europe/Berlin",
        "Europe/London",
        "Europe/Dublin",
        "Asia/Tokyo",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Pacific/Kiritimati",
    ]
)
NEAR = {"min_value": date(2025, 12, 1), "max_value": date(2027, 2, 1)}


@st.composite
def sessions(draw: st.DrawFn, index: int) -> ExchangeSession:
    opens, closes = sorted(draw(st.lists(st.times(), min_size=2, max_size=2, unique=True)))
    half_days = draw(
        st.dictionaries(
            st.dates(**NEAR), st.times(min_value=opens, max_value=closes), max_size=3
        ).map(lambda days: {day: early for day, early in days.items() if early > opens})
    )
    holidays = draw(st.lists(st.dates(**NEAR), max_size=5))
    return ExchangeSession(
        name=f"S{index}",
        timezone=draw(ZONES),
        open=opens,
        close=closes,
        weekdays=draw(st.lists(st.integers(0, 6), max_size=7)),
        holidays=[day for day in holidays if day not in half_days],
        half_days=half_days,
    )


@st.composite
def configs(draw: st.DrawFn) -> MarketHoursConfig:
    count = draw(st.integers(1, 4))
    return MarketHoursConfig(sessions=[draw(sessions(i)) for i in range(count)])


INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.timezones()
) | st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    config=configs(),
    at=INSTANTS,
    action=st.sampled_from(["start", "promote"]),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_low_always_allowed_and_medium_blocked_exactly_while_open(
    config: MarketHoursConfig, at: datetime, action: str, fraction: float
) -> None:
    opened = open_sessions(config, at)
    assert decide(config, "low", action, at).allowed  # type: ignore[arg-type]
    medium = decide(config, "medium", action, at)  # type: ignore[arg-type]
    assert medium.allowed == (not opened)
    assert medium.open_sessions == opened

    if medium.next_window is not None and not medium.allowed:
        # next_window is the *first* closed instant: closed there, open just before and
        # at any instant between `at` and it.
        window = medium.next_window
        assert at < window <= at + HORIZON
        assert open_sessions(config, window) == ()
        assert open_sessions(config, window - timedelta(microseconds=1)) != ()
        # in UTC: adding to a local time is wall-clock arithmetic, which drops `fold` (the
        # second 01:00 of a DST fall-back plus a minute read as the first 01:01, an hour early)
        since = at.astimezone(UTC)
        between = min(since + (window - since) * fraction, window - timedelta(microseconds=1))
        assert open_sessions(config, between) != ()
