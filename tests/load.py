"""A paced load on the example service for tests that need traffic for an open-ended time."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time

from nethical_otel.example import PROFILES, GovernanceError, IntegratedGovernance

ACTIONS = tuple(PROFILES)
COHORTS = ("control", "treatment")


class SteadyLoad:
    """``agents`` threads calling ``process_action`` at ``rps`` in total, paced, until stopped."""

    def __init__(
        self,
        service: IntegratedGovernance,
        rps: float,
        agents: int,
        *,
        actions: tuple[str, ...] = ACTIONS,
        cohorts: tuple[str, ...] = COHORTS,
    ) -> None:
        self.service = service
        self.actions = actions
        self.cohorts = cohorts
        self.interval = agents / rps
        self.agents = agents
        self.stop = threading.Event()
        self.calls = itertools.count()
        self._threads = [
            threading.Thread(target=self._agent, args=(i,), name=f"agent-{i}", daemon=True)
            for i in range(agents)
        ]

    def _agent(self, index: int) -> None:
        agent_id = f"agent-{index:03d}"
        next_at = time.perf_counter() + self.interval * index / self.agents
        for n in itertools.count(index):
            delay = next_at - time.perf_counter()
            if delay > 0 and self.stop.wait(delay):
                return
            if self.stop.is_set():
                return
            next_at += self.interval
            with contextlib.suppress(GovernanceError):  # the instrumentation counts it
                self.service.process_action(
                    agent_id,
                    "summarize the open tickets and draft a reply",
                    cohort=self.cohorts[n % len(self.cohorts)],
                    action_type=self.actions[n % len(self.actions)],
                )
            next(self.calls)

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
