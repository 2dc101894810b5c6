"""The ``nethical-otel`` command line: ``main`` is the entry point (see ``cli.main``)."""

from nethical_otel.cli.main import LAZY_COMMANDS, main

__all__ = ["LAZY_COMMANDS", "main"]
