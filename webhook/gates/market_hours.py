"""Market-hours gate: keep risky rollouts away from open exchange sessions.

A trading platform must not start or promote a risky change while a market it serves is
trading: a bad canary then costs fills, slippage and compliance incidents instead of a retry.
Sessions are defined in each exchange's own time zone and evaluated with `zoneinfo`, so DST is
handled per exchange (New York and Frankfurt change on different dates). Rules:

- `low` may always proceed;
- `medium` / `high` may proceed only while every configured session is closed;
- `critical` always needs a person: the caller passes `approved=True` once someone has signed
  off, and even then it waits for closed markets (approval does not open the gate in hours).

Everything here is pure: the evaluation instant is an argument, never `datetime.now()`, so a
decision can be tested and replayed. The IANA tz database must be available (Debian ships it
as the `tzdata` package; elsewhere `pip install tzdata`); without it every zone fails validation
with a message saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Self, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

RiskTolerance = Literal["low", "medium", "high", "critical"]
Action = Literal["start", "promote"]

#: How far `next_window` looks ahead. Two weeks covers long holiday weekends.
HORIZON = timedelta(days=14)

_DAY_NAMES = {
    name: index
    for index, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}
# Leaves room for the horizon and any UTC offset without overflowing `datetime`.
_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 1, 1, tzinfo=UTC)


class ExchangeSession(BaseModel):
    """One exchange's regular trading session, in local wall-clock time.

    Times are wall-clock in `timezone` (not offsets), because that is how exchanges publish
    them and it makes DST automatic. Sessions may not span midnight.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[^\r\n]+$")
    timezone: str
    open: time
    close: time
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    holidays: list[date] = Field(default_factory=list)
    half_days: dict[date, time] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"unknown IANA time zone {value!r} (e.g. 'America/New_York'; "
                "if every zone fails, the tz database is missing: install tzdata)"
            ) from exc
        return value

    @field_validator("open", "close")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a local wall-clock time without offset; `timezone` applies")
        return value

    @field_validator("close")
    @classmethod
    def _after_open(cls, value: time, info: ValidationInfo) -> time:
        opened = info.data.get("open")
        if opened is not None and value <= opened:
            raise ValueError(
                f"close {value} must be after open {opened} (sessions may not span midnight)"
            )
        return value

    @field_validator("weekdays", mode="before")
    @classmethod
    def _day_names(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            return value
        days: list[object] = []
        for day in value:
            if isinstance(day, str) and not day.strip().isdigit():
                key = day.strip().lower()
                if key not in _DAY_NAMES:
                    raise ValueError(f"unknown weekday {day!r}; use 0-6 (Monday=0) or mon..sun")
                days.append(_DAY_NAMES[key])
            else:
                days.append(day)
        return days

    @field_validator("weekdays")
    @classmethod
    def _day_range(cls, value: list[int]) -> list[int]:
        for day in value:
            if not 0 <= day <= 6:
                raise ValueError(f"weekday {day} out of range; use 0-6 (Monday=0) or mon..sun")
        return sorted(set(value))

    @field_validator("half_days")
    @classmethod
    def _early_close(cls, value: dict[date, time], info: ValidationInfo) -> dict[date, time]:
        opened, closed = info.data.get("open"), info.data.get("close")
        for day, early in value.items():
            if early.tzinfo is not None:
                raise ValueError(f"half day {day}: give a local wall-clock time without offset")
            if opened is not None and closed is not None and not opened < early <= closed:
                raise ValueError(
                    f"half day {day}: early close {early} must be after open {opened} "
                    f"and not after close {closed}"
                )
        return value

    @model_validator(mode="after")
    def _holiday_or_half_day(self) -> Self:
        both = sorted(set(self.holidays) & set(self.half_days))
        if both:
            raise ValueError(
                f"{self.name}: {', '.join(map(str, both))} listed as both holiday and half day"
            )
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances per key

    def trades_on(self, day: date) -> bool:
        """Whether `day` (a local date) is a trading day: a listed weekday, not a holiday."""
        return day.weekday() in self.weekdays and day not in self.holidays

    def close_on(self, day: date) -> time:
        """The local close on `day`: the half-day close if configured, else the regular one."""
        return self.half_days.get(day, self.close)


def _default_sessions() -> list[ExchangeSession]:
    return [
        ExchangeSession(
            name="New York", timezone="America/New_York", open=time(9, 30), close=time(16)
        ),
        # Xetra's continuous trading, and the Tokyo Stock Exchange's session since its close
        # moved to 15:30 in November 2024 (lunch break included: open either side of it)
        ExchangeSession(
            name="Frankfurt", timezone="Europe/Berlin", open=time(9), close=time(17, 30)
        ),
        ExchangeSession(name="Tokyo", timezone="Asia/Tokyo", open=time(9), close=time(15, 30)),
    ]


class MarketHoursConfig(BaseModel):
    """The exchanges whose sessions block risky rollouts.

    Defaults are the regular sessions (New York 09:30–16:00, Frankfurt/Xetra 09:00–17:30,
    Tokyo 09:00–15:30, Monday–Friday) with **no holidays or half days**: those differ per exchange
    and year, so a real deployment must configure its exchanges' calendars, or the gate will
    call a market open on its holidays (safe, but blocks needlessly) and closed after a half
    day's early close only if told so.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sessions: list[ExchangeSession] = Field(default_factory=_default_sessions, min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [session.name for session in self.sessions]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"session names must be unique (reasons name them): {duplicates}")
        return self


@dataclass(frozen=True)
class OpenSession:
    """A session open at the evaluated instant; both instants are aware, in UTC."""

    name: str
    opened_at: datetime
    closes_at: datetime


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer, with a one-line reason for a Kubernetes Event or Argo message."""

    allowed: bool
    needs_approval: bool  # True when only a person can let it through
    reason: str
    open_sessions: tuple[OpenSession, ...]
    next_window: datetime | None  # UTC; when this action would next be allowed, if ever


@dataclass(frozen=True)
class _Live:
    session: ExchangeSession
    day: date
    close: time
    window: OpenSession


def open_sessions(config: MarketHoursConfig, at: datetime) -> tuple[OpenSession, ...]:
    """The sessions open at `at` (timezone-aware), in config order."""
    _check_instant(at)
    return tuple(live.window for live in _live(config, at))


def decide(
    config: MarketHoursConfig,
    risk_tolerance: RiskTolerance,
    action: Action,
    at: datetime,
    approved: bool = False,
) -> GateDecision:
    """Whether a rollout of `risk_tolerance` may `action` ("start" or "promote") at `at`.

    `approved` is a person's sign-off, passed by the caller (the manual-approval path); only
    `critical` needs it, and it never overrides open sessions.
    """
    _check_instant(at)
    if risk_tolerance not in get_args(RiskTolerance):
        raise ValueError(
            f"unknown risk_tolerance {risk_tolerance!r}; use {', '.join(get_args(RiskTolerance))}"
        )
    if action not in get_args(Action):
        raise ValueError(f"unknown action {action!r}; use start or promote")
    live = _live(config, at)
    windows = tuple(item.window for item in live)
    verb = "start" if action == "start" else "be promoted"
    opened = "; ".join(_describe(item) for item in live)

    if risk_tolerance == "low":
        reason = f"risk_tolerance low may {verb} at any time"
        if live:
            reason = f"{reason}, even while sessions are open: {opened}"
        return GateDecision(True, False, reason, windows, at)
    if risk_tolerance == "critical" and not approved:
        reason = (
            f"risk_tolerance critical may {verb} only after a person approves: the caller "
            "passes approved=true once someone has signed off (manual-approval path), "
            "and even then only while all sessions are closed"
        )
        return GateDecision(False, True, _join(opened, reason), windows, None)
    label = f"risk_tolerance {risk_tolerance}" + (" (approved)" if approved else "")
    if not live:
        reason = f"no exchange session open at {_utc(at)}; {label} may {verb}"
        return GateDecision(True, False, reason, (), at)
    nxt = _next_all_closed(config, at)
    when = (
        f"next allowed from {_utc(nxt)}" if nxt else f"no closed window within {HORIZON.days} days"
    )
    reason = f"{opened}; {label} may {verb} only while all sessions are closed; {when}"
    return GateDecision(False, False, reason, windows, nxt)


def _check_instant(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"evaluation time must be timezone-aware, got naive {at.isoformat()}")
    if not _EARLIEST <= at <= _LATEST:
        raise ValueError(f"evaluation time {at.isoformat()} outside years 2..9997")


def _live(config: MarketHoursConfig, at: datetime) -> list[_Live]:
    """Sessions open at `at`: local date is a trading day and open <= local time < close."""
    result = []
    for session in config.sessions:
        tz = session.tz
        local = at.astimezone(tz)
        day = local.date()
        close = session.close_on(day)
        if not (session.trades_on(day) and session.open <= local.time() < close):
            continue
        # In a repeated (fall-back) hour a wall time occurs twice: opened at the latest
        # occurrence not after `at`, closes at the first one after it.
        opens = [t for t in _wall_instants(day, session.open, tz) if t <= at]
        closes = [t for t in _wall_instants(day, close, tz) if t > at]
        window = OpenSession(
            session.name,
            max(opens, default=at.astimezone(UTC)),
            min(closes, default=max(_wall_instants(day, close, tz))),
        )
        result.append(_Live(session, day, close, window))
    return result


def _next_all_closed(config: MarketHoursConfig, at: datetime) -> datetime | None:
    """The first instant in (at, at + HORIZON] at which no session is open.

    "All closed" can only begin where some session stops being open: at a (half-day) close on
    a trading day, or where a DST transition moves a wall clock out of session. Checking just
    those instants in order is exact, and cheaper than a minute-by-minute scan.
    """
    end = at + HORIZON
    candidates: set[datetime] = set()
    for session in config.sessions:
        tz = session.tz
        day = at.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date() + timedelta(days=1)
        while day <= last:
            if session.trades_on(day):
                candidates.update(_wall_instants(day, session.close_on(day), tz))
            day += timedelta(days=1)
        candidates.update(_offset_changes(at, end, tz))
    for candidate in sorted(c for c in candidates if at < c <= end):
        if not _live(config, candidate):
            return candidate
    return None


def _wall_instants(day: date, wall: time, tz: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants at which the wall clock in `tz` shows `wall` on `day`.

    Usually one; two in a repeated (fall-back) hour. In a skipped (spring-forward) hour the
    wall time never shows: the clock jumps past it at the transition, which is returned.
    """
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) != naive:
        return (_transition(min(first, second), max(first, second), tz),)
    return (first,) if first == second else (min(first, second), max(first, second))


def _offset_changes(start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """UTC-offset transitions of `tz` in (start, end], found hourly then bisected.

    Assumes transitions are more than an hour apart, true of the tz database's zones in use.
    """
    changes = []
    lo = start
    while lo < end:
        hi = min(lo + timedelta(hours=1), end)
        if lo.astimezone(tz).utcoffset() != hi.astimezone(tz).utcoffset():
            changes.append(_transition(lo, hi, tz))
        lo = hi
    return changes


def _transition(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The instant in (lo, hi] where `tz`'s offset becomes hi's (tz data is whole seconds)."""
    after = hi.astimezone(tz).utcoffset()
    a, b = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            b = mid
        else:
            a = mid
    return datetime.fromtimestamp(b, UTC)


def _describe(live: _Live) -> str:
    session, close = live.session, live.window.closes_at.astimezone(live.session.tz)
    half = " half day" if live.day in session.half_days else ""
    return (
        f"{session.name} session open ({_hm(session.open)}–{_hm(live.close)} "
        f"{session.timezone}{half}, closes {_hm(close.time())} {close.tzname()}, {live.day})"
    )


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first and second else first or second


def _hm(value: time) -> str:
    return value.strftime("%H:%M") if not (value.second or value.microsecond) else str(value)


def _utc(value: datetime) -> str:
    value = value.astimezone(UTC)
    spec = "auto" if value.second or value.microsecond else "minutes"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
