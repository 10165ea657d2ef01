"""The store: one class over the concerns it is split into (event log, triggers, plans,
stages, sagas, recovery, read models, dead letters, publishers, audit, tenancy,
steering), one
method per state change. Functions see only the operations they use (their `ports.py`).

Every write that announces something stores the announcing events in the same
transaction (`event` table: the run's log and the outbox), so the database always knows
about a change before the bus does. Conditional writes THROW a stale marker when the run
is not in the expected state; the caller sees StaleWriteError and treats the message as
already handled.
"""

from __future__ import annotations

from stratum.store.audit import AuditTrail
from stratum.store.database import Database
from stratum.store.dead_letters import DeadLetters
from stratum.store.event_log import EventLog
from stratum.store.plans import Plans
from stratum.store.publishers import Publishers
from stratum.store.read_models import ReadModels
from stratum.store.recovery import Recovery
from stratum.store.sagas import Sagas
from stratum.store.schema import SCHEMA
from stratum.store.stages import Stages
from stratum.store.steering import Steering
from stratum.store.tenancy import Tenancy
from stratum.store.triggers import Triggers


class RunStore(
    EventLog,
    Triggers,
    Plans,
    Stages,
    Sagas,
    Recovery,
    ReadModels,
    DeadLetters,
    Publishers,
    AuditTrail,
    Tenancy,
    Steering,
):
    """Run state in SurrealDB. One instance per process, shared by the functions."""

    def __init__(self, database: Database) -> None:
        self.db = database

    async def ensure_schema(self) -> None:
        await self.db.query(SCHEMA)
