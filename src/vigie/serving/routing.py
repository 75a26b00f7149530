"""Where an unversioned request goes: production, a canary share to staging, or a shadow.

A canary sends ``canary_share`` of the requests to ``staging`` instead of ``production``;
the split is exact over any run of requests (a deterministic stride, not a coin), so a
share of 0.1 sends exactly one request in ten. A shadow answers every request from
``production`` and mirrors it to ``staging`` without affecting the response. Both are
counted (``vigie_routed_total``) and the payload log records each answer with its route.
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass


class Route(enum.StrEnum):
    """Why a version answered (a metric label and a payload-log field)."""

    PRODUCTION = "production"
    CANARY = "canary"
    SHADOW = "shadow"
    EXPLICIT = "explicit"  # the client named a version


@dataclass(frozen=True)
class Decision:
    """The version that answers, and the one that gets a mirror copy (shadow), if any."""

    version: str
    route: Route
    mirror: str | None = None


class Router:
    """Chooses the route of each unversioned request of one worker.

    Args:
        canary_share: Share of requests answered by staging (0 to 1).
        shadow: Mirror every request to staging (takes precedence over a canary).
    """

    def __init__(self, *, canary_share: float, shadow: bool) -> None:
        if not 0.0 <= canary_share <= 1.0:
            raise ValueError(f"canary_share must be within [0, 1], got {canary_share}")
        self.canary_share = canary_share
        self.shadow = shadow
        self._count: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def wants_staging(self) -> bool:
        """True when staging versions must be loaded (canary or shadow configured)."""
        return self.shadow or self.canary_share > 0.0

    def decide(self, model: str, *, production: str | None, staging: str | None) -> Decision:
        """Route one request of ``model``.

        Args:
            model: The model.
            production: The loaded production version, if any.
            staging: The loaded staging version, if any.

        Raises:
            LookupError: the model has no loaded production version.
        """
        if production is None:
            raise LookupError(model)
        if staging is None or staging == production:
            return Decision(production, Route.PRODUCTION)
        if self.shadow:
            return Decision(production, Route.PRODUCTION, mirror=staging)
        if self._take_canary(model):
            return Decision(staging, Route.CANARY)
        return Decision(production, Route.PRODUCTION)

    def _take_canary(self, model: str) -> bool:
        """True for exactly ``floor(n * share)`` of the first n requests of the model."""
        if self.canary_share <= 0.0:
            return False
        with self._lock:
            n = self._count.get(model, 0)
            self._count[model] = n + 1
        return math.floor((n + 1) * self.canary_share) > math.floor(n * self.canary_share)
