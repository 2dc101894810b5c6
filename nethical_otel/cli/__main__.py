"""``python -m nethical_otel.cli``: the same as the ``nethical-otel`` command."""

from nethical_otel.cli.main import main

main(prog_name="nethical-otel")
