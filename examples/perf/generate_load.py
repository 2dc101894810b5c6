"""The regression guide's load generator command line, kept working.

    python examples/perf/generate_load.py --agents 100 --rps 50 --duration 30 --cohort benchmark \
        --output results.csv [--shadow] [--ml-blend]

It is ``nethical-otel load`` with the same options (see ``nethical-otel load --help``).
"""

import sys

from nethical_otel.cli import main

if __name__ == "__main__":
    sys.exit(main(["load", *sys.argv[1:]], prog_name="generate_load.py"))
