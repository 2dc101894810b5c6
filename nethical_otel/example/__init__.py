"""An example governance service with a realistic ``process_action``."""

from nethical_otel.example.governance import PROFILES, Decision, GovernanceError, IntegratedGovernance

__all__ = ["PROFILES", "Decision", "GovernanceError", "IntegratedGovernance"]
