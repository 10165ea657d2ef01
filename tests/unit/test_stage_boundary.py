"""A stage's end decides the run's next step in the stage executor (`after_stage`): the
next stage's command, or the run's success with the hash of everything it produced. Pure:
the same result decides the same events, with the same ids, however often it is handled."""

from __future__ import annotations

import hashlib

import orjson

from functions.stage_executor.core import after_stage, outputs_hash
from stratum.events import ExecuteStage, RunSucceeded, StageCompleted
from stratum.graph import ActionGraph
from tests.events import T0, run_events

PLAN = [["fmt", "lint"], ["build"], ["publish"]]
GRAPH = ActionGraph(version="v1", nodes={}, schemas={})


def completed(stage: int) -> StageCompleted:
    return StageCompleted(stage=stage, nodes=PLAN[stage])


def test_a_completed_stage_dispatches_the_next_one() -> None:
    result, other = run_events([completed(0), completed(0)])
    step = after_stage(result, PLAN, {}, {"x": 1}, GRAPH, T0)

    assert step.kind == "advance" and step.outputs_hash is None
    (order,) = step.events
    assert order.payload(ExecuteStage) == ExecuteStage(stage=1, nodes=["build"])
    assert (order.runid, order.tenant) == (result.runid, result.tenant)
    # decided again for the same result: the same command, which the bus drops as a repeat
    assert after_stage(result, PLAN, {}, {"x": 1}, GRAPH, T0) == step
    # another result (another run's, or another stage's) gets a command of its own
    assert after_stage(other, PLAN, {}, {}, GRAPH, T0).events[0].id != order.id


def test_the_last_stage_succeeds_the_run_with_the_hash_of_its_outputs() -> None:
    (result,) = run_events([completed(2)])
    produced = {"built-artifact": {"sha256": "ab"}, "formatted-code": {"dir": "."}}
    step = after_stage(result, PLAN, {}, produced, GRAPH, T0)

    assert step.kind == "succeed"
    (done,) = step.events
    expected = hashlib.sha256(orjson.dumps(produced, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert done.payload(RunSucceeded).outputs_hash == expected == step.outputs_hash
    # the hash does not depend on the order capabilities were produced in
    assert outputs_hash(dict(reversed(produced.items()))) == expected
    assert after_stage(result, PLAN, {}, {"other": 1}, GRAPH, T0).outputs_hash != expected
