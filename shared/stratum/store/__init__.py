"""SurrealDB persistence: the only place that speaks SurrealQL or sees SDK exceptions."""

from stratum.store.database import (
    AtLimitError,
    CancellingError,
    Database,
    StaleWriteError,
    StoreError,
)
from stratum.store.dead_letters import DeadLetter
from stratum.store.publishers import PublisherRecord
from stratum.store.read_models import ViewWrite
from stratum.store.runs import RunStore
from stratum.store.stages import RunChange, StageStart

__all__ = [
    "AtLimitError",
    "CancellingError",
    "Database",
    "DeadLetter",
    "PublisherRecord",
    "RunChange",
    "RunStore",
    "StageStart",
    "StaleWriteError",
    "StoreError",
    "ViewWrite",
]
