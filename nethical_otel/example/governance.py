"""A realistic governance engine: the service nethical-otel is built to watch.

``IntegratedGovernance.process_action`` does what an AI-governance hot path does: checks
the action against policy rules (real CPU work: regex matching and hashing), scores risk,
sometimes consults a slower model (``ml_blend``) and records an audit entry, with simulated
I/O whose latency is lognormal. Each ``action_type`` has its own latency profile. Errors
happen at a configurable rate. ``slowdown`` (global or per action type) multiplies the
simulated work at run time, and ``step_slowdown`` that of one sub-step: the demo and the
tests inject regressions with them.

It is instrumented the way a service would do it: one ``@instrument`` on the hot method,
with the action type as the bounded ``nethical.action`` label, and one on each of its
sub-steps (``SUBSTEPS``), which are recorded per parent action (``nethical.action.parent``):
``policy_store.fetch`` (simulated I/O, 60 % of the simulated time), ``policy.check`` (the
real CPU work and the decision; the failures happen here), ``risk.model`` (simulated I/O, the
other 40 %).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from nethical_otel.telemetry import instrument

# The instrumented sub-steps of process_action, in call order.
FETCH, CHECK, MODEL = "policy_store.fetch", "policy.check", "risk.model"
SUBSTEPS = (FETCH, CHECK, MODEL)
FETCH_SHARE = 0.6  # of the simulated I/O; risk.model has the rest
IO_SHARES = {FETCH: FETCH_SHARE, MODEL: 1 - FETCH_SHARE}  # the sub-steps a slowdown can go into

# Median latency (ms) and spread (sigma of the log) of the simulated I/O per action type.
PROFILES: dict[str, tuple[float, float]] = {
    "query": (4.0, 0.35),
    "tool_call": (9.0, 0.45),
    "generate": (18.0, 0.5),
}

_RULES = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\b(password|secret|api[_-]?key|token)\b",
        r"\brm\s+-rf\b|\bdrop\s+table\b",
        r"\b\d{3}-\d{2}-\d{4}\b",  # SSN-like
        r"\b(ignore|bypass)\s+(all|previous)\s+(rules|instructions)\b",
    )
]


class GovernanceError(RuntimeError):
    """The engine failed to decide (a simulated dependency error)."""


@dataclass(frozen=True)
class Decision:
    agent_id: str
    action_type: str
    allowed: bool
    risk_score: float
    violations: tuple[str, ...]
    audit_id: str


@dataclass
class IntegratedGovernance:
    """The example service. Thread-safe; ``process_action`` and ``aprocess_action``.

    ``simulate_io=False`` busy-waits instead of sleeping, for benchmarks that must not
    depend on the scheduler; ``latency_scale`` scales all simulated latencies.
    """

    seed: int | None = None
    error_rate: float = 0.002
    slowdown: float = 1.0
    latency_scale: float = 1.0
    simulate_io: bool = True
    slowdown_by_action: dict[str, float] = field(default_factory=dict)
    # (action type, or None for every one; sub-step) -> factor on that sub-step's simulated I/O
    step_slowdown: dict[tuple[str | None, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._lock = threading.Lock()
        self.audit_log_size = 0

    def _draw(self, action_type: str, ml_blend: bool) -> tuple[float, bool]:
        """(simulated latency in seconds, whether this call fails)."""
        median_ms, sigma = PROFILES.get(action_type, PROFILES["query"])
        with self._lock:  # numpy Generators are not thread-safe
            latency = self._rng.lognormal(math.log(median_ms / 1000.0), sigma)
            failed = self._rng.random() < self.error_rate
        factor = self.slowdown * self.slowdown_by_action.get(action_type, 1.0) * self.latency_scale
        if ml_blend:  # the blended model is slower
            factor *= 1.25
        return latency * factor, failed

    def _io(self, action_type: str, latency: float) -> tuple[float, float]:
        """The simulated I/O of ``policy_store.fetch`` and ``risk.model``, seconds."""
        slow = self.step_slowdown
        fetch = latency * FETCH_SHARE * slow.get((action_type, FETCH), slow.get((None, FETCH), 1.0))
        model = latency * (1 - FETCH_SHARE) * slow.get((action_type, MODEL), slow.get((None, MODEL), 1.0))
        return fetch, model

    @instrument(name=FETCH)
    def _fetch_policy(self, seconds: float) -> None:
        self._wait(seconds)

    @instrument(name=FETCH)
    async def _afetch_policy(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @instrument(name=MODEL)
    def _score(self, seconds: float) -> None:
        self._wait(seconds)

    @instrument(name=MODEL)
    async def _ascore(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @instrument(name=CHECK)
    def _decide(self, agent_id: str, action: str, action_type: str, shadow: bool, failed: bool) -> Decision:
        if failed:
            raise GovernanceError(f"policy store unavailable while judging {agent_id}")
        return self._evaluate(agent_id, action, action_type, shadow)

    def _evaluate(self, agent_id: str, action: str, action_type: str, shadow: bool) -> Decision:
        violations = tuple(rule.pattern for rule in _RULES if rule.search(action))
        digest = hashlib.sha256(f"{agent_id}|{action_type}|{action}".encode()).hexdigest()
        risk = min(1.0, 0.3 * len(violations) + int(digest[:4], 16) / 0xFFFF * 0.2)
        with self._lock:
            self.audit_log_size += 1
        return Decision(
            agent_id=agent_id,
            action_type=action_type,
            allowed=shadow or risk < 0.5,
            risk_score=round(risk, 4),
            violations=violations,
            audit_id=digest[:16],
        )

    def _wait(self, seconds: float) -> None:
        if self.simulate_io:
            time.sleep(seconds)
        else:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                pass

    @instrument(action_arg="action_type")
    def process_action(
        self,
        agent_id: str,
        action: str,
        cohort: str | None = None,
        action_type: str = "query",
        *,
        shadow: bool = False,
        ml_blend: bool = False,
    ) -> Decision:
        """Judge one agent action. Raises ``GovernanceError`` at ``error_rate``."""
        latency, failed = self._draw(action_type, ml_blend)
        fetch, model = self._io(action_type, latency)
        self._fetch_policy(fetch)
        decision = self._decide(agent_id, action, action_type, shadow, failed)
        self._score(model)
        return decision

    @instrument(name="process_action", action_arg="action_type")
    async def aprocess_action(
        self,
        agent_id: str,
        action: str,
        cohort: str | None = None,
        action_type: str = "query",
        *,
        shadow: bool = False,
        ml_blend: bool = False,
    ) -> Decision:
        """``process_action`` for asyncio services: the simulated I/O awaits."""
        latency, failed = self._draw(action_type, ml_blend)
        fetch, model = self._io(action_type, latency)
        await self._afetch_policy(fetch)
        decision = self._decide(agent_id, action, action_type, shadow, failed)
        await self._ascore(model)
        return decision
