"""Sharded agents: N replicas split the series between them by a stable hash, with no
coordination service.

Replica ``i`` of ``N`` (``--shard i/N``, the ``agent_shard`` setting) owns the series whose hash
modulo N is i, and only those: it evaluates them, learns and keeps their baselines, and sends
their alerts. The hash is the one of Prometheus' ``hashmod`` relabelling (MD5 of the label
values joined by ``;``, its last 8 bytes big-endian, modulo N) over service, action and cohort,
so a Prometheus-side split (``hashmod`` on ``job, nethical_action, nethical_cohort``) gives the
same shards. The split does not depend on which series exist: a series keeps its replica as
others come and go, and changing N moves about (N-1)/N of them, as ``hashmod`` does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nethical_otel.config import parse_shard
from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.errors import ConfigError


def series_hash(key: SeriesKey) -> int:
    """Prometheus' ``hashmod`` hash of the series' service, action and cohort (before the modulus)."""
    digest = hashlib.md5(f"{key.service};{key.action};{key.cohort}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str | None, where: str = "agent_shard") -> Shard:
        """``"i/N"`` with 0 <= i < N; empty or None is the whole (``0/1``)."""
        try:
            return cls(*parse_shard(spec))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc} (got {spec!r})") from None

    def owns(self, key: SeriesKey) -> bool:
        """A sub-step belongs with its parent (whose alerts name it)."""
        return self.count == 1 or series_hash(key.parent_key or key) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
