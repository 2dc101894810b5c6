"""CPU profiles of a load target, and where the time went between two of them.

``nethical-otel load --profile`` runs the target once more *after* the measured run, for a
short phase of its own (``default_profile_seconds``: 20 % of ``--duration``, 2 to 30 s), one
call after another in one thread under ``cProfile``; the measured latencies are never taken
with the profiler on. The profile is written beside the CSV as ``NAME.profile.json``
(``PROFILE_FORMAT``, versioned like the histogram sidecar; not pstats' marshal, which changes
between Python versions) and holds, per function: file, line, name, primitive and total
calls, self time, *own* time and cumulative time, plus the number of target calls the phase
made, so every figure divides into a time per target call.

*Own* time is a function's self time plus that of the built-ins it calls directly
(``time.sleep``, ``sum``, a C extension's functions): cProfile books those under the
built-in, and a table ranked by plain self time would name ``time.sleep`` rather than the
code that sleeps. ``diff_profiles`` ranks functions by the change of their own time per
target call (the leaf that got slower) and shows the cumulative time beside it (what the
function and its callees cost, i.e. the caller chain).

Left out, so that the tables name the target's code: the profiling loop and load generator
(``nethical_otel/bench``), the profiler itself, the asyncio event loop that drives an async
target (so an async target's waiting time is not counted; its CPU time is), and imports.
Paths are stored relative to the ``sys.path`` entry (or working directory) they are under:
``mypkg/engine.py``, ``numpy/core/fromnumeric.py``, the same for a base and a pull request
checked out and installed in different directories. Clock: wall time (``time.perf_counter``),
the clock the latencies are measured with; cProfile adds about 1 µs per function call, so
the profile's times per call are above the run's latencies but compare between two runs.

A file keeps the ``KEEP`` functions with the most cumulative time and the ``KEEP`` with the
most own time (at most ``2 * KEEP``, a few tens of kB), each with its ``CALLERS`` callers of
most cumulative time: a leaf shared by several callers (a helper, ``json.dumps``) is shown
with the caller through which its time grew.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import json
import math
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nethical_otel.bench.results import PROFILE_SUFFIX, BenchError, RunResult, run_stem
from nethical_otel.files import read_versioned_json
from nethical_otel.files import write_atomic as atomic_write_text

PROFILE_FORMAT = "nethical-otel-cpu-profile"
PROFILE_VERSION = 1
KEEP = 200  # functions kept per ranking (cumulative, own)
CALLERS = 3  # callers kept per function
TABLE_ROWS = 8  # rows of "Where the time went"
# A row must move by at least this (ms per target call) and this share of the largest move:
# a 5 ms regression's table does not go on with functions that moved by a microsecond.
MIN_CHANGE_MS = 0.001
MIN_SHARE = 0.05

BUILTIN_FILE = "~"  # cProfile's file name for built-in (C) functions
# Frames that are the load generator's, the profiler's or the interpreter's own (see the
# module docstring); matched on the shortened path.
_OWN_MODULES = ("nethical_otel/bench/cpuprofile.py", "nethical_otel/bench/loadgen.py")
_BOOKKEEPING_FILES = ("cProfile.py", "selectors.py")
_BOOKKEEPING_PREFIXES = ("asyncio/", "<frozen importlib")


# -- the document ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A function's caller and the cumulative time the function spent on its calls, seconds."""

    file: str
    line: int
    function: str
    cumulative_s: float


@dataclass(frozen=True)
class FunctionStats:
    """One function of a profile; times in seconds over the whole profiling phase."""

    file: str  # shortened (see the module docstring); "~" for a built-in
    line: int
    function: str
    primitive_calls: int  # calls that were not recursive
    calls: int
    self_s: float  # cProfile's tottime
    own_s: float  # self time plus the built-ins it called directly
    cumulative_s: float
    callers: tuple[Caller, ...] = ()

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.file, self.line, self.function)


@dataclass
class CpuProfile:
    """A profiling phase: its target calls and the functions they ran."""

    target_calls: int
    duration_s: float
    profiled_s: float  # own time of every function not left out (before keeping the top)
    functions: list[FunctionStats]
    errors: int = 0
    target: str = ""
    python: str = field(default_factory=platform.python_version)
    functions_seen: int = 0
    run: dict[str, Any] = field(default_factory=dict)  # {timestamp, requests} of the measured run
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "run": self.run,
            "target": self.target,
            "python": self.python,
            "clock": "wall",
            "target_calls": self.target_calls,
            "errors": self.errors,
            "duration_s": self.duration_s,
            "profiled_s": self.profiled_s,
            "functions_seen": self.functions_seen,
            "functions": [
                {
                    "file": f.file,
                    "line": f.line,
                    "function": f.function,
                    "primitive_calls": f.primitive_calls,
                    "calls": f.calls,
                    "self_s": f.self_s,
                    "own_s": f.own_s,
                    "cumulative_s": f.cumulative_s,
                    "callers": [
                        {
                            "file": c.file,
                            "line": c.line,
                            "function": c.function,
                            "cumulative_s": c.cumulative_s,
                        }
                        for c in f.callers
                    ],
                }
                for f in self.functions
            ],
        }

    def for_run(self, result: RunResult) -> CpuProfile:
        """This profile, marked as the one of the measured run ``result``."""
        self.run = {"timestamp": result.timestamp, "requests": result.requests}
        return self


def profile_path(csv_path: str | os.PathLike[str]) -> Path:
    """``results.csv`` (or its ``results.histogram.json``) -> ``results.profile.json``."""
    path = Path(csv_path)
    return path.with_name(run_stem(path) + PROFILE_SUFFIX)


def default_profile_seconds(duration_s: float) -> float:
    """The profiling phase when not given: 20 % of the measured duration, 2 to 30 s."""
    return min(30.0, max(2.0, 0.2 * duration_s))


def write_profile(profile: CpuProfile, path: str | os.PathLike[str]) -> Path:
    atomic_write_text(path, json.dumps(profile.to_dict(), indent=1, allow_nan=False) + "\n")
    return Path(path)


def read_profile(path: str | os.PathLike[str]) -> CpuProfile:
    """The profile in ``path``; ``BenchError`` naming the file and field when unusable."""
    path = Path(path)
    doc = read_versioned_json(
        path, "CPU profile (JSON)", PROFILE_FORMAT, PROFILE_VERSION, "rerun `nethical-otel load --profile`",
        BenchError,
    )  # fmt: skip
    calls = _field(doc, "target_calls", int, path)
    if calls < 1:
        raise BenchError(f"{path}: field 'target_calls' is {calls}, expected at least 1")
    raw = doc.get("functions")
    if not isinstance(raw, list):
        raise BenchError(f"{path}: field 'functions' must be a list")
    functions = []
    for i, entry in enumerate(raw):
        where = f"functions[{i}]"
        if not isinstance(entry, dict):
            raise BenchError(f"{path}: {where} must be an object")
        raw_callers = entry.get("callers", [])
        if not isinstance(raw_callers, list) or not all(isinstance(c, dict) for c in raw_callers):
            raise BenchError(f"{path}: field '{where}.callers' must be a list of objects")
        callers = tuple(
            Caller(
                _field(c, "file", str, path, f"{where}.callers[{j}]"),
                _field(c, "line", int, path, f"{where}.callers[{j}]"),
                _field(c, "function", str, path, f"{where}.callers[{j}]"),
                _field(c, "cumulative_s", float, path, f"{where}.callers[{j}]"),
            )
            for j, c in enumerate(raw_callers)
        )
        functions.append(
            FunctionStats(
                file=_field(entry, "file", str, path, where),
                line=_field(entry, "line", int, path, where),
                function=_field(entry, "function", str, path, where),
                primitive_calls=_field(entry, "primitive_calls", int, path, where),
                calls=_field(entry, "calls", int, path, where),
                self_s=_field(entry, "self_s", float, path, where),
                own_s=_field(entry, "own_s", float, path, where),
                cumulative_s=_field(entry, "cumulative_s", float, path, where),
                callers=callers,
            )
        )
    run = doc.get("run", {})
    if not isinstance(run, dict):
        raise BenchError(f"{path}: field 'run' must be an object")
    return CpuProfile(
        target_calls=calls,
        duration_s=_field(doc, "duration_s", float, path),
        profiled_s=_field(doc, "profiled_s", float, path),
        functions=functions,
        errors=_field(doc, "errors", int, path),
        target=str(doc.get("target") or ""),
        python=str(doc.get("python") or ""),
        functions_seen=_field(doc, "functions_seen", int, path),
        run=run,
        source=str(path),
    )


def _field(doc: dict, name: str, kind: type, path: Path, where: str = "") -> Any:
    value = doc.get(name)
    label = f"{where}.{name}" if where else name
    if kind is str:
        if not isinstance(value, str):
            raise BenchError(f"{path}: field {label!r} is {value!r}, expected a string")
        return value
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok or not math.isfinite(value) or value < 0:
        expected = "a whole number >= 0" if kind is int else "a number >= 0"
        raise BenchError(f"{path}: field {label!r} is {value!r}, expected {expected}")
    return int(value) if kind is int else float(value)


# -- collecting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileProgress:
    """A live view of the profiling phase."""

    elapsed_s: float
    calls: int
    duration_s: float


class _Phase:
    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.stop = False
        self.failure: BaseException | None = None


def collect(
    func: Callable[..., Any],
    calls: Sequence[tuple[tuple, dict]],
    *,
    is_async: bool,
    seconds: float,
    timeout_s: float,
    target: str = "",
    on_progress: Callable[[ProfileProgress], None] | None = None,
    refresh_s: float = 0.25,
) -> CpuProfile:
    """Call ``func`` with ``calls`` (cycled), one call after another, under cProfile for
    ``seconds`` (at least one call; the call in flight finishes). An exception of the target
    counts as an error, as in the load run. Raises ``BenchError`` when the phase has not
    ended ``timeout_s`` after it began (a call that does not return)."""
    if not calls:
        raise ValueError("no calls to make")
    phase = _Phase()
    profiler = cProfile.Profile()
    end = time.perf_counter() + seconds

    def drive() -> None:
        profiler.enable()  # in this thread: cProfile profiles the thread that enables it
        try:
            if is_async:
                asyncio.run(_async_loop(func, calls, end, phase))
            else:
                _loop(func, calls, end, phase)
        except BaseException as exc:  # reported by the caller's thread
            phase.failure = exc
        finally:
            profiler.disable()

    started = time.perf_counter()
    worker = threading.Thread(target=drive, name="nethical-profile", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            elapsed = time.perf_counter() - started
            if elapsed > timeout_s:
                phase.stop = True
                raise BenchError(
                    f"profiling phase: a call of {target or 'the target'} did not return within "
                    f"{timeout_s:g} s; no profile written"
                )
            if on_progress is not None:
                on_progress(ProfileProgress(elapsed, phase.calls, seconds))
            worker.join(timeout=refresh_s)
    except BaseException:
        phase.stop = True
        raise
    duration = time.perf_counter() - started
    if on_progress is not None:
        on_progress(ProfileProgress(duration, phase.calls, seconds))
    if phase.failure is not None:
        raise phase.failure
    profiler.create_stats()
    functions, profiled, seen = summarise(profiler.stats)  # type: ignore[attr-defined]
    return CpuProfile(
        target_calls=phase.calls,
        duration_s=duration,
        profiled_s=profiled,
        functions=functions,
        errors=phase.errors,
        target=target,
        functions_seen=seen,
    )


def _loop(func: Callable[..., Any], calls: Sequence[tuple[tuple, dict]], end: float, phase: _Phase) -> None:
    clock = time.perf_counter
    for args, kwargs in itertools.cycle(calls):
        try:
            func(*args, **kwargs)
        except Exception:
            phase.errors += 1
        phase.calls += 1
        if clock() >= end or phase.stop:
            return


async def _async_loop(
    func: Callable[..., Any], calls: Sequence[tuple[tuple, dict]], end: float, phase: _Phase
) -> None:
    clock = time.perf_counter
    for args, kwargs in itertools.cycle(calls):
        try:
            await func(*args, **kwargs)
        except Exception:
            phase.errors += 1
        phase.calls += 1
        if clock() >= end or phase.stop:
            return


def summarise(
    stats: dict[tuple[str, int, str], tuple], roots: Sequence[str] | None = None, keep: int = KEEP
) -> tuple[list[FunctionStats], float, int]:
    """cProfile's ``stats`` (``{(file, line, name): (cc, nc, tt, ct, callers)}``) as kept in a
    profile: (functions by cumulative time, own time of all that are not left out, how many
    those were). ``roots`` shorten the paths (default: ``sys.path`` and the working directory)."""
    roots = _roots() if roots is None else sorted(roots, key=len, reverse=True)
    own = {key: float(value[2]) for key, value in stats.items()}
    for key, (_cc, _nc, _tt, _ct, callers) in stats.items():
        if key[0] != BUILTIN_FILE:
            continue
        for caller, edge in callers.items():  # a built-in's time moves to whoever called it
            if caller in own:
                own[caller] += edge[2]
                own[key] -= edge[2]
    functions = []
    for key, (cc, nc, tt, ct, callers) in stats.items():
        file = short_path(key[0], roots)
        if is_bookkeeping(file, key[2]):
            continue
        by_caller = []
        for (c_file, c_line, c_name), edge in callers.items():
            c_short = short_path(c_file, roots)
            if not is_bookkeeping(c_short, c_name):
                by_caller.append(Caller(c_short, c_line, c_name, float(edge[3])))
        by_caller.sort(key=lambda c: (-c.cumulative_s, c.file, c.line, c.function))
        own_s = max(0.0, own[key])
        top = tuple(by_caller[:CALLERS])
        functions.append(FunctionStats(file, key[1], key[2], cc, nc, tt, own_s, ct, top))
    profiled = sum(f.own_s for f in functions)
    kept = {f.key: f for f in sorted(functions, key=lambda f: -f.cumulative_s)[:keep]}
    kept.update({f.key: f for f in sorted(functions, key=lambda f: -f.own_s)[:keep]})
    ordered = sorted(kept.values(), key=lambda f: (-f.cumulative_s, -f.own_s, f.key))
    return ordered, profiled, len(functions)


def _roots() -> list[str]:
    candidates = {os.path.abspath(p or os.curdir) for p in [os.getcwd(), *sys.path]}
    return sorted((p for p in candidates if os.path.isdir(p)), key=len, reverse=True)


def short_path(filename: str, roots: Sequence[str]) -> str:
    """``filename`` relative to the longest of ``roots`` it is under (``/``-separated), else as is."""
    if filename == BUILTIN_FILE or filename.startswith("<") or not os.path.isabs(filename):
        return filename
    for root in roots:
        prefix = root.rstrip(os.sep) + os.sep
        if filename.startswith(prefix):
            return filename[len(prefix) :].replace(os.sep, "/")
    return filename


def is_bookkeeping(file: str, function: str) -> bool:
    """Whether a (shortened) frame is the load generator's, the profiler's or the event
    loop's own rather than the target's."""
    if file == BUILTIN_FILE:
        return "_lsprof.Profiler" in function
    if any(file == m or file.endswith("/" + m) for m in _OWN_MODULES):
        return True
    if file in _BOOKKEEPING_FILES or file.startswith(_BOOKKEEPING_PREFIXES):
        return True
    return "/asyncio/" in file  # a path not under a sys.path entry


_BUILTIN_METHOD = re.compile(r"<built-in method (.+)>")
_METHOD_OF = re.compile(r"<method '(.+)' of '(.+)' objects>")


def display_name(function: str) -> str:
    """``<built-in method time.sleep>`` -> ``time.sleep``; ``<method 'join' of 'str' objects>``
    -> ``str.join``; other names as they are."""
    match = _BUILTIN_METHOD.fullmatch(function)
    if match:
        return match.group(1)
    match = _METHOD_OF.fullmatch(function)
    if match:
        return f"{match.group(2)}.{match.group(1)}"
    return function


def location(file: str, line: int) -> str:
    return "built-in" if file == BUILTIN_FILE else f"{file}:{line}"


# -- diffing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionChange:
    """One function in both profiles (or one of them), per target call: ms and calls."""

    file: str
    line: int
    function: str
    base_ms: float | None  # own time; None: not in the base profile
    current_ms: float | None
    base_cumulative_ms: float | None
    current_cumulative_ms: float | None
    base_calls: float | None  # calls of the function per target call
    current_calls: float | None
    via: Caller | None = None  # the caller whose calls of it moved most, when it has several

    @property
    def change_ms(self) -> float:
        return (self.current_ms or 0.0) - (self.base_ms or 0.0)

    @property
    def change_pct(self) -> float | None:
        """Relative change of the own time, percent; None when the base has none."""
        if not self.base_ms:
            return None
        return (self.change_ms / self.base_ms) * 100

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "location": location(self.file, self.line),
            "base_ms_per_call": self.base_ms,
            "current_ms_per_call": self.current_ms,
            "change_ms_per_call": self.change_ms,
            "change_pct": self.change_pct,
            "base_cumulative_ms_per_call": self.base_cumulative_ms,
            "current_cumulative_ms_per_call": self.current_cumulative_ms,
            "base_calls_per_call": self.base_calls,
            "current_calls_per_call": self.current_calls,
            "via": None
            if self.via is None
            else {
                "file": self.via.file,
                "line": self.via.line,
                "function": self.via.function,
                "location": location(self.via.file, self.via.line),
            },
        }


@dataclass(frozen=True)
class ProfileDiff:
    """Where the time per target call went, base -> current: the largest moves first."""

    base_calls: int
    current_calls: int
    base_ms: float  # profiled time per target call
    current_ms: float
    rows: list[FunctionChange]
    base_source: str = ""
    current_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranked_by": "own_ms_per_call",
            "base": {
                "source": self.base_source,
                "target_calls": self.base_calls,
                "ms_per_call": self.base_ms,
            },
            "current": {
                "source": self.current_source,
                "target_calls": self.current_calls,
                "ms_per_call": self.current_ms,
            },
            "functions": [row.to_dict() for row in self.rows],
        }


def diff_profiles(base: CpuProfile, current: CpuProfile, limit: int = TABLE_ROWS) -> ProfileDiff:
    """The functions whose own time per target call changed most (by absolute change),
    at most ``limit``, none that moved by less than ``MIN_CHANGE_MS`` or ``MIN_SHARE`` of the
    largest move. Functions match on (file, line, name), then on (file, name) where that is
    unique on both sides (a pull request that moves a function keeps its history)."""
    pairs = _match(_kept(base), _kept(current))
    b_n, c_n = base.target_calls, current.target_calls
    changes = []
    for old, new in pairs:
        shown = new or old
        assert shown is not None
        changes.append(
            FunctionChange(
                shown.file,
                shown.line,
                shown.function,
                old.own_s / b_n * 1e3 if old else None,
                new.own_s / c_n * 1e3 if new else None,
                old.cumulative_s / b_n * 1e3 if old else None,
                new.cumulative_s / c_n * 1e3 if new else None,
                old.calls / b_n if old else None,
                new.calls / c_n if new else None,
                _via(old, new, b_n, c_n),
            )
        )
    changes.sort(key=lambda c: (-abs(c.change_ms), c.file, c.line, c.function))
    top = abs(changes[0].change_ms) if changes else 0.0
    floor = max(MIN_CHANGE_MS, MIN_SHARE * top)
    rows = [c for c in changes if abs(c.change_ms) >= floor][:limit]
    return ProfileDiff(
        b_n,
        c_n,
        base.profiled_s / b_n * 1e3,
        current.profiled_s / c_n * 1e3,
        rows,
        base.source,
        current.source,
    )


def _via(old: FunctionStats | None, new: FunctionStats | None, b_n: int, c_n: int) -> Caller | None:
    """Of a function called from more than one place, the caller through which its cumulative
    time per target call moved most (in the direction of the function's own move)."""
    callers = {(c.file, c.function): c for f in (old, new) if f for c in f.callers}
    if len(callers) < 2:
        return None

    def per_call(f: FunctionStats | None, name: tuple[str, str], n: int) -> float:
        return sum(c.cumulative_s for c in (f.callers if f else ()) if (c.file, c.function) == name) / n

    moves = {name: per_call(new, name, c_n) - per_call(old, name, b_n) for name in callers}
    grew = (new.own_s / c_n if new else 0.0) >= (old.own_s / b_n if old else 0.0)
    sign = 1.0 if grew else -1.0
    best = max(sorted(moves), key=lambda name: sign * moves[name])
    current = {(c.file, c.function): c for c in (new.callers if new else ())}
    return current.get(best, callers[best])


def _kept(profile: CpuProfile) -> list[FunctionStats]:
    return [f for f in profile.functions if not is_bookkeeping(f.file, f.function)]


def _match(
    base: list[FunctionStats], current: list[FunctionStats]
) -> list[tuple[FunctionStats | None, FunctionStats | None]]:
    by_key = {f.key: f for f in base}
    pairs: list[tuple[FunctionStats | None, FunctionStats | None]] = []
    left_cur = []
    for f in current:
        old = by_key.pop(f.key, None)
        if old is None:
            left_cur.append(f)
        else:
            pairs.append((old, f))

    def by_name(items: list[FunctionStats]) -> dict[tuple[str, str], list[FunctionStats]]:
        grouped: dict[tuple[str, str], list[FunctionStats]] = {}
        for f in items:
            grouped.setdefault((f.file, f.function), []).append(f)
        return grouped

    old_names, new_names = by_name(list(by_key.values())), by_name(left_cur)
    matched_old: set[tuple[str, int, str]] = set()
    for name, news in new_names.items():
        olds = old_names.get(name, [])
        if len(news) == 1 and len(olds) == 1:
            pairs.append((olds[0], news[0]))
            matched_old.add(olds[0].key)
        else:
            pairs.extend((None, f) for f in news)
    pairs.extend((f, None) for f in by_key.values() if f.key not in matched_old)
    return pairs


# -- the two runs of a comparison ------------------------------------------------------------


@dataclass
class ProfilePair:
    """The profiles of a comparison's two runs: their diff when both are usable, the runs
    without one (``missing``), and one warning per unusable file."""

    diff: ProfileDiff | None = None
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_profiles(baseline: RunResult, current: RunResult) -> ProfilePair:
    """The profiles beside the two runs' files (``profile_path``); never raises for a bad
    profile: it becomes a warning naming the file, and there is no diff."""
    pair = ProfilePair()
    profiles = []
    for run in (baseline, current):
        if not run.source:
            pair.missing.append("a run in memory")
            continue
        path = profile_path(run.source)
        if not path.exists():
            pair.missing.append(run.source)
            continue
        try:
            profile = read_profile(path)
        except BenchError as exc:
            pair.warnings.append(f"{exc}; the report has no profile section")
            continue
        mine = {"timestamp": run.timestamp, "requests": run.requests}
        if profile.run and profile.run != mine:
            pair.warnings.append(
                f"{path}: describes another run than {run.source} ({profile.run} vs {mine}); "
                "the report has no profile section"
            )
            continue
        profiles.append(profile)
    if len(profiles) == 2:
        pair.diff = diff_profiles(*profiles)
    return pair
