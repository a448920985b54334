"""Rollout gates: pure decisions on whether a rollout may start or be promoted right now.

Gates take the evaluation instant as an argument (never read the clock) so that a decision can
be tested, replayed from an Event's timestamp, and explained.
"""

from webhook.gates.market_hours import (
    Action,
    ExchangeSession,
    GateDecision,
    MarketHoursConfig,
    OpenSession,
    RiskTolerance,
    decide,
    open_sessions,
)

__all__ = [
    "Action",
    "ExchangeSession",
    "GateDecision",
    "MarketHoursConfig",
    "OpenSession",
    "RiskTolerance",
    "decide",
    "open_sessions",
]
