"""Stratum's five single-purpose functions. Each consumes JetStream subjects and continues
the chain only by publishing events:

    ingest -> planner -> stage_executor -> stage_executor -> ... -> (compensator)
                                                         every event -> projector

Each has `app.py` (its module-level DECLARATION and a handler in four steps: parse, load,
decide, commit), `core.py` (the pure decisions) and `ports.py` (the store operations it
uses). One runner (`stratum.runtime.handling`) drives every handler, under the JetStream
or the CloudEvents HTTP adapter; `stratum_host.registry` lists them for `stratum up` and
the deployment manifests. A function imports the library (`stratum`), never another
function nor `stratum_host`.
"""
