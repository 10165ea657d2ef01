"""The README's path, as a user takes it: `stratum up` as a process (its own nats-server,
embedded SurrealDB on disk), then `emit --wait`, `runs`, `show`, `plan`, `check`, then
SIGTERM, and a second `up` that carries on with the same data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRATUM = str(Path(sys.executable).parent / "stratum")


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRATUM, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_up(env: dict[str, str], data_dir: Path, cwd: Path = ROOT) -> subprocess.Popen[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "up.log").open("a") as log:  # the child keeps its own copy of the fd
        process = subprocess.Popen(
            [STRATUM, "up"],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"stratum up exited: {(data_dir / 'up.log').read_text()}")
        if (data_dir / "endpoint.json").is_file():
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("stratum up did not come up within 60 s")


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    values = dict(os.environ)
    values.update({"STRATUM_DATA_DIR": str(tmp_path / "data"), "STRATUM_WATCH": "false"})
    yield values


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_user_path_through_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = start_up(env, data_dir)
    try:
        endpoint = json.loads((data_dir / "endpoint.json").read_text())
        assert endpoint["nats"].startswith("nats://127.0.0.1:")
        assert endpoint["http"].startswith("http://127.0.0.1:")

        done = cli(
            env,
            "emit",
            "crate.push",
            "--tenant",
            "acme",
            "--data",
            '{"source": "nickel/examples/sample-crate"}',
            "--wait",
            "--json",
        )
        view = json_out(done)
        assert view["status"] == "Succeeded"
        assert [s["nodes"] for s in view["stages"]] == [
            ["fmt-crate", "lint-crate"],
            ["build-crate"],
        ]

        target = tmp_path / "release"
        failed = cli(
            env,
            "emit",
            "release.request",
            "--tenant",
            "acme",
            "--data",
            json.dumps({"version": "3.1.4", "target": str(target), "fail_at": "publish"}),
            "--wait",
        )
        assert failed.returncode == 2  # finished, but not Succeeded
        assert "Compensated" in failed.stdout and "compensation (reverse order)" in failed.stdout

        listed = json_out(cli(env, "runs", "--json"))
        assert {r["run_id"] for r in listed} >= {view["run_id"]}
        assert {r["status"] for r in listed} == {"Succeeded", "Compensated"}

        shown = cli(env, "show", view["run_id"])
        assert shown.returncode == 0 and "build-crate" in shown.stdout and "stage 1" in shown.stdout

        replayed = cli(env, "replay")
        assert replayed.returncode == 0 and "of 2 run(s)" in replayed.stdout
        assert json_out(cli(env, "runs", "--json")) == listed

        unknown = cli(env, "show", "run-does-not-exist")
        assert unknown.returncode != 0
        assert unknown.stderr.strip() == "error: unknown run run-does-not-exist"
    finally:
        code = stop(process)
    assert code == 0
    assert not (data_dir / "endpoint.json").exists()
    # the nats-server it launched (argv names its store under the data dir) is gone too
    leftover = subprocess.run(
        ["pgrep", "-f", str(data_dir / "nats")], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""

    again = start_up(env, data_dir)  # starting again carries on with the same data
    try:
        assert len(json_out(cli(env, "runs", "--json"))) == 2
    finally:
        assert stop(again) == 0


def test_plan_and_check_and_their_errors(env: dict[str, str], tmp_path: Path) -> None:
    planned = json_out(cli(env, "plan", "crate.push", "--json"))
    assert planned["stages"] == [["fmt-crate", "lint-crate"], ["build-crate"]]
    assert (planned["complete"], planned["problems"]) == (True, [])
    unknown = cli(env, "plan", "no.such.topic")
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == "error: no node is triggered by topic 'no.such.topic'"

    assert cli(env, "check").returncode == 0

    broken = tmp_path / "workflows"
    shutil.copytree(ROOT / "nickel" / "workflows", broken)
    crate = broken / "crate" / "crate.ncl"
    crate.write_text(crate.read_text().replace("timeout = 60", 'timeout = "soon"'))
    result = cli({**env, "STRATUM_DEFINITIONS": str(broken)}, "check")
    assert result.returncode != 0
    assert "crate.ncl:" in result.stderr and "timeout" in result.stderr
    assert "Traceback" not in result.stderr

    # crate.push is only in the broken file: it cannot be planned from the files that load
    planned = cli({**env, "STRATUM_DEFINITIONS": str(broken)}, "plan", "crate.push")
    assert planned.returncode == 1
    *problems, last = planned.stderr.strip().splitlines()
    assert problems == [line for line in result.stderr.splitlines() if "crate.ncl:" in line]
    assert last.startswith(
        "error: no node is triggered by topic 'crate.push' "
        "(from the files that load; 1 file(s) broken; left out, so without their nodes: "
    )
    assert last.endswith("crate.ncl)")


def until(probe: Callable[[], Any], timeout: float = 30) -> Any:
    """`probe()` once it is truthy (polled), or fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last or time.monotonic() > deadline:
            assert last, f"not within {timeout}s: {last!r}"
            return last
        time.sleep(0.1)


def test_plan_beside_a_broken_file_on_disk_and_live(env: dict[str, str], tmp_path: Path) -> None:
    """One broken workflow file: `plan` still plans the topics of the files that load,
    marked so and naming the broken file (exit 3), and `plan --live` shows the plan of the
    graph the running Stratum keeps, whatever the disk says."""
    definitions = tmp_path / "workflows"
    shutil.copytree(ROOT / "nickel" / "workflows", definitions)
    env = {**env, "STRATUM_DEFINITIONS": str(definitions), "STRATUM_WATCH": "true"}
    clean = json_out(cli(env, "plan", "release.request", "--json"))
    release = definitions / "release" / "release.ncl"
    process = start_up(env, tmp_path / "data")
    try:
        live = json_out(cli(env, "plan", "release.request", "--live", "--json"))
        assert live == {
            "topic": "release.request",
            "source": "live",
            "graph_version": clean["graph_version"],
            "stages": clean["stages"],
            "graph_error": None,
        }
        text = release.read_text()
        release.write_text(text.replace('consumes = ["release-staging"],', "consumes = [", 1))
        [problem] = cli(env, "check").stderr.splitlines()[:-1]
        assert problem.startswith(f"{release}:") and problem.endswith(": unexpected token")

        on_disk = cli(env, "plan", "crate.push")
        assert on_disk.returncode == 3, on_disk.stderr
        assert "plan for crate.push  (from the files that load; 1 file(s) broken)" in on_disk.stdout
        assert "stage 0: fmt-crate, lint-crate" in on_disk.stdout
        problems, warning = on_disk.stderr.strip().splitlines()
        assert problems == problem
        assert warning.startswith("warning: this plan is not authoritative: it is from the ")
        assert f"left out, so without their nodes: {release}." in warning
        body = json.loads(cli(env, "plan", "crate.push", "--json").stdout)
        assert (body["complete"], body["graph_version"]) == (False, None)
        assert body["stages"] == [["fmt-crate", "lint-crate"], ["build-crate"]]
        assert body["left_out"] == body["broken_files"] == [str(release)]
        [listed] = body["problems"]
        assert f"{listed['file']}:{listed['line']}:{listed['column']}: unexpected token" == problem

        cannot = cli(env, "plan", "release.request")
        assert cannot.returncode == 1
        assert cannot.stderr.splitlines()[0] == problem
        assert cannot.stderr.splitlines()[-1].startswith(
            "error: no node is triggered by topic 'release.request' (from the files that load"
        )

        def refused() -> Any:  # the watcher has seen the broken file and kept its graph
            answer = json_out(cli(env, "plan", "release.request", "--live", "--json"))
            return answer if answer["graph_error"] else None

        assert {**until(refused), "graph_error": None} == live
        shown = cli(env, "plan", "release.request", "--live")
        assert shown.returncode == 0
        assert f"plan for release.request  (live graph {clean['graph_version']})" in shown.stdout
        assert "stage 0: prepare-release" in shown.stdout
        assert shown.stderr.startswith(
            f"note: the running Stratum refused its latest definitions and keeps graph "
            f"{clean['graph_version']}: {problem}"
        )
        unknown = cli(env, "plan", "no.such.topic", "--live")
        assert unknown.returncode == 5  # the API answered 404: not found
        assert unknown.stderr.strip() == "error: no node is triggered by topic 'no.such.topic'"
    finally:
        assert stop(process) == 0


def test_up_fails_fast_naming_an_unreachable_dependency(env: dict[str, str]) -> None:
    for name, variable, url in (
        ("SurrealDB", "STRATUM_SURREAL_URL", "ws://127.0.0.1:1"),
        ("NATS", "STRATUM_NATS_URL", "nats://127.0.0.1:1"),
    ):
        result = cli({**env, variable: url}, "up", timeout=60)
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {name} at {url} is not reachable"), last


def test_commands_that_need_a_running_stratum_say_so(env: dict[str, str]) -> None:
    result = cli(env, "runs")
    assert result.returncode == 1
    assert result.stderr.startswith("error: Stratum is not running")
    bad = cli(env, "emit", "crate.push", "--tenant", "acme", "--data", "{not json")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --data is not JSON")
