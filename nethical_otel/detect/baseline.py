"""Baselines: what "normal" looks like for each (service, action, cohort).

A ``Baseline`` is the latency histogram of a reference window plus its throughput and
error rate and where it came from. A baseline file holds one per series as versioned
JSON; it is written atomically (temp file + rename, so a crash never leaves half a file)
and validated on load: a corrupt or wrong-version file is a ``BaselineError`` naming the
file and what is wrong, never silently replaced.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nethical_otel import files
from nethical_otel.errors import NethicalOtelError
from nethical_otel.files import read_json, write_atomic
from nethical_otel.stats import LatencyHistogram, StatsError
from nethical_otel.stats.significance import Reference

FORMAT = "nethical-otel-baselines"
VERSION = 1
# The latest creation time a baseline file may state: 9999-12-31T23:59:59Z, the last second a
# datetime can show (`baseline show` prints it).
MAX_CREATED_AT = 253402300799.0


class BaselineError(NethicalOtelError):
    """A baseline file that cannot be read, or is not a baseline file we understand."""


@dataclass(frozen=True, order=True)
class SeriesKey:
    """Identifies a monitored series. ``cohort`` is "" when the calls carry none.

    ``parent`` is set on a sub-step: ``action``'s calls made inside calls of ``parent`` (same
    service and cohort; calls of ``action`` outside any instrumented call are the series
    without ``parent``). Sub-steps have baselines and comparisons of their own but no alerts:
    they say where a regression of their parent is.
    """

    service: str
    action: str
    cohort: str = ""
    parent: str = ""

    def labels(self) -> dict[str, str]:
        labels = {"service": self.service, "action": self.action, "cohort": self.cohort}
        if self.parent:
            labels["parent"] = self.parent
        return labels

    @property
    def parent_key(self) -> SeriesKey | None:
        """The series this sub-step is a part of (None for a top-level series)."""
        return SeriesKey(self.service, self.parent, self.cohort) if self.parent else None

    def __str__(self) -> str:
        action = f"{self.parent} > {self.action}" if self.parent else self.action
        return f"{self.service}/{action}" + (f"/{self.cohort}" if self.cohort else "")


@dataclass
class Baseline:
    key: SeriesKey
    histogram: LatencyHistogram
    window_s: float
    source: str
    created_at: float = field(default_factory=time.time)
    version: str = ""
    _reference: Reference | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def reference(self) -> Reference:
        """What the comparisons keep of this baseline from one step to the next."""
        if self._reference is None or self._reference.histogram is not self.histogram:
            self._reference = Reference(self.histogram)
        return self._reference

    @property
    def throughput_rps(self) -> float:
        return self.histogram.count / self.window_s if self.window_s > 0 else math.nan

    @property
    def error_rate(self) -> float:
        return self.histogram.error_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.key.service,
            "action": self.key.action,
            "cohort": self.key.cohort,
            **({"parent": self.key.parent} if self.key.parent else {}),
            "window_s": self.window_s,
            "source": self.source,
            "created_at": self.created_at,
            "version": self.version,
            "sample_count": self.histogram.count,
            "throughput_rps": self.throughput_rps,
            "error_rate": self.error_rate if self.histogram.count else None,
            "histogram": self.histogram.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Baseline:
        if not isinstance(data, dict):
            raise BaselineError(f"{where}: expected an object")

        def need(name: str, kind: type | tuple[type, ...]) -> Any:
            if name not in data:
                raise BaselineError(f"{where}: missing {name!r}")
            value = data[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise BaselineError(f"{where}: {name!r} has the wrong type")
            return value

        def number(name: str, valid: Callable[[float], bool], expected: str) -> float:
            raw = need(name, (int, float))
            try:
                value = float(raw)
            except OverflowError:  # an integer beyond float range
                value = math.inf
            if not valid(value):  # NaN fails every comparison
                raise BaselineError(f"{where}: {name!r} must be {expected} (got {raw!r})")
            return value

        try:
            histogram = LatencyHistogram.from_dict(need("histogram", dict))
        except StatsError as exc:
            raise BaselineError(f"{where}: histogram: {exc}") from None
        window_s = number("window_s", lambda v: 0 < v < math.inf, "> 0 and finite (seconds)")
        parent = need("parent", str) if "parent" in data else ""
        return cls(
            key=SeriesKey(need("service", str), need("action", str), need("cohort", str), parent),
            histogram=histogram,
            window_s=window_s,
            source=need("source", str),
            created_at=number(
                "created_at", lambda v: 0 <= v <= MAX_CREATED_AT, "a Unix time in seconds, years 1970..9999"
            ),
            version=need("version", str),
        )


class BaselineSet:
    """The baselines of a file, by series."""

    def __init__(self, baselines: Iterable[Baseline] = ()) -> None:
        self._by_key: dict[SeriesKey, Baseline] = {}
        for baseline in baselines:
            self.add(baseline)

    def add(self, baseline: Baseline) -> None:
        self._by_key[baseline.key] = baseline

    def get(self, key: SeriesKey) -> Baseline | None:
        return self._by_key.get(key)

    def __iter__(self):
        return iter(sorted(self._by_key.values(), key=lambda b: b.key))

    def __len__(self) -> int:
        return len(self._by_key)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write atomically. Refuses to replace an existing file unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise BaselineError(f"{path} exists; pass overwrite=True to replace it")
        document = {"format": FORMAT, "version": VERSION, "baselines": [b.to_dict() for b in self]}
        write_atomic(path, json.dumps(document, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BaselineSet:
        path = Path(path)
        document = read_json(path, "baseline file (JSON)", BaselineError)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise BaselineError(f"{path} is not a nethical-otel baseline file")
        if document.get("version") != VERSION:
            found = document.get("version")
            raise BaselineError(f"{path}: baseline format version {found!r}; nethical-otel reads {VERSION}")
        entries = document.get("baselines")
        if not isinstance(entries, list):
            raise BaselineError(f"{path}: 'baselines' must be a list")
        return cls(Baseline.from_dict(entry, f"{path}: baselines[{i}]") for i, entry in enumerate(entries))


def check_writable(path: str | os.PathLike[str], *, overwrite: bool, how: str = "overwrite=True") -> Path:
    """``path``, unless it exists and may not be replaced, or cannot be written (checked before
    any long work). ``how`` names the way to allow replacing it (the CLI says ``--force``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BaselineError(f"{path} exists; pass {how} to replace it")
    return files.check_writable(path)
