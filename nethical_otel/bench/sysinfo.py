"""Process memory and CPU, read from the kernel without extra dependencies."""

from __future__ import annotations

import math
import os
import sys

try:
    import resource  # POSIX only: without it (Windows) the package must still import
except ImportError:
    resource = None

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1e6


def rss_mb() -> float:
    """Resident set size of this process now, in MB (10**6 bytes).

    Linux: ``/proc/self/statm``. Other POSIX systems (macOS): the peak RSS (``getrusage``), the
    best the standard library offers; it never decreases, which is what a growth check needs
    anyway. NaN where neither exists (Windows): unknown, never a made-up number.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE / MB
    except (OSError, IndexError, ValueError):
        if resource is None:
            return math.nan
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / MB if sys.platform == "darwin" else peak * 1024 / MB


def cpu_seconds() -> float:
    """User + system CPU time this process has used, seconds (all threads)."""
    times = os.times()
    return times.user + times.system
