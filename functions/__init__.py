"""Stratum's five single-purpose functions. Each consumes JetStream subjects and continues
the chain only by publishing events:

    ingest -> planner -> stage_executor -> planner -> ... -> (compensator) -> projector

Each has `core.py` (pure decisions), `app.py` (the declaration: subjects + handler), and
`__main__.py` (run it alone against a NATS and SurrealDB URL).
"""
