"""What `import nethical_otel` costs a service at start-up, side by side with the OTel SDK, in one run.

Variants (each is a fresh ``python -c ...`` subprocess, timed from spawn to exit):
  python            ``pass``: interpreter start alone
  otel sdk          ``import opentelemetry.sdk.trace, opentelemetry.sdk.metrics``
  nethical_otel     ``import nethical_otel``, wrap a function with ``@instrument`` and call it once

Rounds interleave the variants (after one warm-up round that is not counted, so every
``.pyc`` exists); each figure is the median over rounds. ``OTEL_*``/``NETHICAL_OTEL_*`` are
removed from the children's environment, so the defaults are measured. A last, untimed child
lists the heavy modules (CI side, plotting, scipy, ...) that the service side loaded: there
should be none.

    python benchmarks/import_cost.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OURS = "import nethical_otel; nethical_otel.instrument(lambda: 1)()"
VARIANTS = {
    "python": "pass",
    "otel sdk": "import opentelemetry.sdk.trace, opentelemetry.sdk.metrics",
    "nethical_otel": OURS,
}
TARGET = 1.5  # ours / otel sdk

# Must not be loaded by the service side (DESIGN.md, "Two sides of one package").
HEAVY = ("nethical_otel.bench", "nethical_otel.cli", "scipy", "matplotlib", "rich", "click", "pandas")
REPORT = """
import json, sys
heavy = [h for h in {heavy!r} if any(m == h or m.startswith(h + ".") for m in sys.modules)]
print(json.dumps({{"modules": len(sys.modules), "heavy": heavy}}))
"""


def child_env() -> dict[str, str]:
    drop = ("OTEL_", "NETHICAL_OTEL_", "PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_ms(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1e3


def loaded(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code + "\n" + REPORT.format(heavy=HEAVY)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    env = child_env()

    for code in VARIANTS.values():  # warm-up: bytecode caches, page cache
        run_ms(code, env)
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, code in VARIANTS.items():
            samples[name].append(run_ms(code, env))

    median = {name: statistics.median(s) for name, s in samples.items()}
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"import cost, median wall time of a fresh interpreter over {args.rounds} interleaved rounds "
          f"(python {version})")  # fmt: skip
    for name, code in VARIANTS.items():
        spread = statistics.pstdev(samples[name]) if len(samples[name]) > 1 else 0.0
        print(f"  {name:<14} {median[name]:>7.1f} ms   (±{spread:.1f})   {code}")
    ours, sdk, bare = median["nethical_otel"], median["otel sdk"], median["python"]
    ratio = ours / sdk
    print("ratios (target):")
    print(f"  {'nethical_otel / otel sdk':<38} {ratio:5.2f}x   (<= {TARGET:.1f}x) "
          f"{'ok' if ratio <= TARGET else 'MISSED'}")  # fmt: skip
    if sdk > bare:
        net = (ours - bare) / (sdk - bare)
        print(f"  {'same, net of interpreter start':<38} {net:5.2f}x   (for reference)")

    for label, code in (("nethical_otel", OURS), ("otel sdk", VARIANTS["otel sdk"])):
        found = loaded(code, env)
        heavy = ", ".join(found["heavy"]) or "none"
        print(f"modules loaded by {label}: {found['modules']}; heavy ({', '.join(HEAVY)}): {heavy}")


if __name__ == "__main__":
    main()
