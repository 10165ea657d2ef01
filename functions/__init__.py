"""Stratum's five single-purpose functions. Each consumes JetStream subjects and continues
the chain only by publishing events:

    ingest -> planner -> stage_executor -> planner -> ... -> (compensator) -> projector

Each has `core.py` (pure decisions) and `app.py` (the declaration: subjects + handler),
run by the JetStream adapter in `stratum.runtime`; `stratum up` (`stratum_host.server`) runs
all five in one process.
"""
