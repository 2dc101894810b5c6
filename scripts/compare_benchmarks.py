"""The regression guide's comparison command line, kept working.

    python scripts/compare_benchmarks.py baseline.csv feature.csv [--format markdown|json|text]
                                         [--output FILE]

It is ``nethical-otel compare`` (see ``nethical-otel compare --help``): exit 0 no regression
or only warnings, 1 a failing condition (error rate +1 percentage point, a budget), 2 bad input.
"""

import sys

from nethical_otel.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]], prog_name="compare_benchmarks.py"))
