"""The gateway's routing policy: which version (stable / canary) serves a request, and why."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("percentage", "user_hash", "header")
VERSIONS = ("stable", "canary")


def bucket(key: str) -> float:
    """Stable position of ``key`` in [0, 100) (SHA-256 based, the same on every machine)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 10000 / 100.0


@dataclass(frozen=True)
class Decision:
    version: str
    reason: str  # weight_zero | header | session | user_hash | percentage | header_default


class Router:
    """The routing policy; ``decide`` is pure apart from the session table and the random draw."""

    def __init__(
        self,
        canary_weight: float = 10.0,
        strategy: str = "percentage",
        *,
        session_ttl_s: float = 1800.0,
        max_sessions: int = 100_000,
        rng: random.Random | None = None,
    ) -> None:
        self.validate(canary_weight, strategy)
        self.canary_weight = float(canary_weight)
        self.strategy = strategy
        self.session_ttl_s = session_ttl_s
        self.max_sessions = max_sessions
        self.rng = rng or random.Random()  # noqa: S311 - traffic split, not security
        self.updated_at = time.time()
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def validate(weight: Any, strategy: Any) -> None:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
            raise ValueError(f"canary_weight must be a number in 0..100, got {weight!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")

    def update(self, weight: float | None = None, strategy: str | None = None) -> None:
        new_w = self.canary_weight if weight is None else weight
        new_s = self.strategy if strategy is None else strategy
        self.validate(new_w, new_s)
        with self._lock:
            self.canary_weight = float(new_w)
            self.strategy = new_s
            self.updated_at = time.time()

    def state(self) -> dict[str, Any]:
        return {
            "canary_weight": self.canary_weight,
            "strategy": self.strategy,
            "strategies": list(STRATEGIES),
            "updated_at": self.updated_at,
            "sticky_sessions": self.session_counts(),
        }

    def session_counts(self) -> dict[str, int]:
        with self._lock:
            self._expire(time.monotonic())
            counts = dict.fromkeys(VERSIONS, 0)
            for version, _ in self._sessions.values():
                counts[version] += 1
            return counts

    def _expire(self, now: float) -> None:
        while self._sessions:
            _, (_, seen) = next(iter(self._sessions.items()))
            if now - seen <= self.session_ttl_s and len(self._sessions) <= self.max_sessions:
                break
            self._sessions.popitem(last=False)

    def _eligible(self, version: str) -> bool:
        return self.canary_weight > 0 if version == "canary" else self.canary_weight < 100

    def decide(
        self, user_id: str | None = None, session_id: str | None = None, canary_header: str | None = None
    ) -> Decision:
        w = self.canary_weight
        if w <= 0:
            return Decision("stable", "weight_zero")
        header = (canary_header or "").strip().lower()
        if self.strategy == "header" and header in {"always", "never"}:
            return Decision("canary" if header == "always" else "stable", "header")
        now = time.monotonic()
        if session_id:
            with self._lock:
                entry = self._sessions.get(session_id)
                if entry is not None and now - entry[1] <= self.session_ttl_s and self._eligible(entry[0]):
                    self._sessions[session_id] = (entry[0], now)
                    self._sessions.move_to_end(session_id)
                    return Decision(entry[0], "session")
        if self.strategy == "user_hash" and user_id:
            decision = Decision("canary" if bucket(user_id) < w else "stable", "user_hash")
        elif self.strategy == "header":
            decision = Decision("stable", "header_default")
        else:
            decision = Decision("canary" if self.rng.random() * 100 < w else "stable", "percentage")
        if session_id:
            with self._lock:
                self._sessions[session_id] = (decision.version, now)
                self._sessions.move_to_end(session_id)
                self._expire(now)
        return decision
