"""The functions Stratum is made of, in pipeline order: the one place their names,
subjects, NKey permissions and deployment manifests come from (each declared by its
own `functions/<name>/app.py`)."""

from __future__ import annotations

from collections.abc import Collection

from functions.compensator.app import DECLARATION as COMPENSATOR
from functions.ingest.app import DECLARATION as INGEST
from functions.planner.app import DECLARATION as PLANNER
from functions.projector.app import DECLARATION as PROJECTOR
from functions.stage_executor.app import DECLARATION as STAGE_EXECUTOR
from stratum.bus.subjects import Subjects
from stratum.config import Settings
from stratum.errors import ConfigError
from stratum.runtime import Declaration, Function

DECLARATIONS: tuple[Declaration, ...] = (INGEST, PLANNER, STAGE_EXECUTOR, COMPENSATOR, PROJECTOR)
FUNCTION_NAMES: tuple[str, ...] = tuple(declaration.name for declaration in DECLARATIONS)


def chosen(names: Collection[str]) -> tuple[Declaration, ...]:
    """The declarations named, in pipeline order; ConfigError naming any unknown one."""
    unknown = sorted(set(names) - set(FUNCTION_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown function(s) {', '.join(unknown)}; one of {', '.join(FUNCTION_NAMES)}"
        )
    return tuple(declaration for declaration in DECLARATIONS if declaration.name in names)


def placed(settings: Settings, subjects: Subjects) -> list[Function]:
    """Every function under the subject prefix, for its declaration only (nothing is
    opened, no handler is built): what deployment files are written from (`stratum nats
    config`, deploy/knative)."""
    return [declaration.place(subjects, settings) for declaration in DECLARATIONS]
