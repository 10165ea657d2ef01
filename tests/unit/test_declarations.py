"""A declaration is placed under a subject prefix the same way for every function, and the
runner takes a handler through its four steps in order, handing each the last's result."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stratum.bus.subjects import Subjects
from stratum.errors import ConfigError
from stratum.events import Envelope, RunAccepted, RunSucceeded
from stratum.runtime import Declaration, Dependencies, Inbound
from stratum.runtime.function import RUN_ENDINGS
from stratum.runtime.handling import run_steps
from stratum_host.registry import DECLARATIONS, chosen, placed
from tests.conftest import make_settings


class Recording:
    """Records the steps as they are called, each result naming the one before."""

    def __init__(self, dependencies: Dependencies | None = None) -> None:
        self.steps: list[str] = []

    def parse(self, inbound: Inbound) -> str:
        self.steps.append("parse")
        return inbound.body.decode()

    async def load(self, event: str) -> str:
        self.steps.append(f"load {event}")
        return f"state of {event}"

    def decide(self, event: str, state: str, now: datetime) -> list[str]:
        self.steps.append(f"decide {event} on {state}")
        return [event, state]

    async def commit(self, decision: list[str]) -> Sequence[Envelope]:
        self.steps.append(f"commit {decision}")
        return []


async def test_the_runner_calls_parse_load_decide_commit_in_order() -> None:
    handler = Recording()
    assert await run_steps(handler, Inbound("s", {}, b"e")) == []
    assert handler.steps == [
        "parse",
        "load e",
        "decide e on state of e",
        "commit ['e', 'state of e']",
    ]


def test_a_declaration_is_placed_under_the_prefix(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "", subject_prefix="p")
    subjects = Subjects("p")
    runs = Declaration(
        "a", Recording, consumes=(RunAccepted.TYPE,), emits=("x",), ends_runs=True
    ).place(subjects, settings)
    assert (runs.stream, runs.subjects) == (
        subjects.runs_stream,
        (subjects.internal(RunAccepted.TYPE),),
    )
    assert runs.emits == tuple(dict.fromkeys(("x", *RUN_ENDINGS)))
    assert runs.handler is None
    with pytest.raises(RuntimeError, match="declaration only"):
        runs.runnable  # noqa: B018
    every = Declaration("b", Recording, consumes=None, concurrency=lambda s: 7).place(
        subjects, settings
    )
    assert every.subjects == subjects.internal_wildcards and every.concurrency == 7
    publishers = Declaration("c", Recording, consumes=None, source="publishers").place(
        subjects, settings
    )
    assert (publishers.stream, publishers.subjects) == (
        subjects.events_stream,
        (subjects.events_wildcard,),
    )


def test_the_registry_places_every_function_and_refuses_unknown_names(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "", subject_prefix="p")
    functions = placed(settings, Subjects("p"))
    assert [f.name for f in functions] == [d.name for d in DECLARATIONS]
    by_name: dict[str, Any] = {f.name: f for f in functions}
    # the stage executor runs as many stages at once as the settings say
    assert by_name["stage-executor"].concurrency == settings.stage_concurrency
    assert Subjects("p").internal(RunSucceeded.TYPE) in by_name["planner"].subjects
    assert [d.name for d in chosen(["projector", "ingest"])] == ["ingest", "projector"]
    with pytest.raises(ConfigError, match=r"unknown function.*nope"):
        chosen(["nope"])
