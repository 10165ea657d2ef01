"""SurrealDB persistence: the only place that speaks SurrealQL or sees SDK exceptions."""

from stratum.store.database import Database, StaleWriteError, StoreError
from stratum.store.runs import RunStore

__all__ = ["Database", "RunStore", "StaleWriteError", "StoreError"]
