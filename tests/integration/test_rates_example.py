"""The `rates.import` example's scripts, run for real by `nu` (as
tests/integration/test_example_scripts.py runs the others): parse-rates names the file and
line of a bad rate and fails (which holds the run); publish-rates writes the rates and its
undo puts back what was there before, or removes what was not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.test_example_scripts import ROOT, load_workflow, run_nu, validate

RATES = load_workflow(ROOT / "nickel" / "workflows" / "rates" / "rates.ncl")
EXAMPLES = ROOT / "nickel" / "examples" / "rates"


def step(node: str, payload: dict[str, Any], workspace: Path, kind: str = "handler") -> Any:
    done = run_nu(RATES.script(node, kind), payload, workspace=workspace, node=node)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_rates_workflow_holds_where_its_input_can_be_wrong() -> None:
    assert RATES.stages("rates.import") == [["snapshot-rates"], ["parse-rates"], ["publish-rates"]]
    assert RATES.nodes["parse-rates"]["on_failure"] == "hold"
    assert RATES.nodes["publish-rates"].get("on_failure", "compensate") == "compensate"


def test_a_bad_line_fails_parsing_naming_the_file_and_line(tmp_path: Path) -> None:
    event = {"source": str(EXAMPLES / "rates-bad.csv"), "target": str(tmp_path / "t")}
    failed = run_nu(
        RATES.script("parse-rates"),
        {"run": {"id": "run-1"}, "event": event, "inputs": {}},
        workspace=tmp_path,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"parse-rates: {event['source']} line 3: 'O.85' is not a rate"


def test_publishing_and_its_undo_leave_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    before = '{"rates": {"USD": 1.01}}'
    (target / "rates.json").write_text(before)
    event = {"source": str(EXAMPLES / "rates.csv"), "target": str(target)}
    run = {"id": "run-1", "tenant": "acme", "topic": "rates.import"}
    snapshot = step("snapshot-rates", {"run": run, "event": event, "inputs": {}}, tmp_path)
    validate(RATES, "rates-snapshot", snapshot["rates-snapshot"])
    assert snapshot["rates-snapshot"]["content"] == before
    parsed = step("parse-rates", {"run": run, "event": event, "inputs": snapshot}, tmp_path)
    validate(RATES, "parsed-rates", parsed["parsed-rates"])
    inputs = snapshot | parsed
    published = step("publish-rates", {"run": run, "event": event, "inputs": inputs}, tmp_path)
    validate(RATES, "published-rates", published["published-rates"])
    written = json.loads((target / "rates.json").read_text())
    assert written["rates"] == {"USD": 1.08, "GBP": 0.85, "JPY": 163.2}

    undo = {"run": run, "event": event, "inputs": inputs, "outputs": published}
    step("publish-rates", undo, tmp_path, kind="compensate")
    assert (target / "rates.json").read_text() == before
    # with nothing there before, the undo removes what the run wrote
    (target / "rates.json").unlink()
    empty = step("snapshot-rates", {"run": run, "event": event, "inputs": {}}, tmp_path)
    step("publish-rates", {"run": run, "event": event, "inputs": empty | parsed}, tmp_path)
    again = {"run": run, "event": event, "inputs": empty | parsed, "outputs": {}}
    step("publish-rates", again, tmp_path, kind="compensate")
    step("publish-rates", again, tmp_path, kind="compensate")  # idempotent
    assert not (target / "rates.json").exists()
