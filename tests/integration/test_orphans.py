"""The orphan registry against real processes: an instance killed with SIGKILL leaves its
nu scripts running; `sweep_orphans` in the next instance kills them, and nothing else.

The "dead instance" is a Python process started by the test that runs a node through the
executor; the test kills it by pid. Every process a test starts is killed in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stratum.executor import (
    ExecutionContext,
    OrphanRecord,
    run_node,
    sweep_orphans,
)
from stratum.executor.orphans import starttime
from stratum.graph.model import ActionNode
from tests.integration.conftest import NU

ROOT = Path(__file__).resolve().parents[2]

HANG = """def main [] {
    $in | ignore
    $nu.pid | into string | save -f $"($env.STRATUM_BUNDLE)/nu.pid"
    ^sleep 60
}
"""

DEAD_INSTANCE = """
import asyncio, json, sys
from pathlib import Path
from stratum.executor import ExecutionContext, run_node
from stratum.graph.model import ActionNode

cfg = json.loads(sys.argv[1])
ctx = ExecutionContext(
    run_id=cfg["run_id"], tenant="acme", stage=0, data_dir=Path(cfg["data_dir"]),
    workdir=Path(cfg["workdir"]), nu_bin=Path(cfg["nu"]), nu_path=cfg["path"],
)
node = ActionNode(id="hang", handler=Path(cfg["script"]), timeout=120)
asyncio.run(run_node(node, {}, {}, ctx))
"""


# ---------------------------------------------------------------- helpers


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, pgrp) of `pid`, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[2])


def alive(pid: int) -> bool:
    """True while `pid` runs; zombies (state Z/X) are dead."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group(pgid: int) -> list[int]:
    """Live processes in process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return sorted(found)


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


class Started:
    """Processes this test started (pid, start time): killed at the end if still running,
    and only if the pid still is the same process."""

    def __init__(self) -> None:
        self.processes: list[tuple[int, int]] = []

    def add(self, pid: int) -> None:
        started = starttime(pid)
        if started is not None:
            self.processes.append((pid, started))

    def kill_all(self) -> None:
        for pid, started in self.processes:
            if starttime(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started() -> Iterator[Started]:
    tracker = Started()
    try:
        yield tracker
    finally:
        tracker.kill_all()


def registrations(data_dir: Path) -> list[Path]:
    folder = data_dir / "proc"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# ---------------------------------------------------------------- a dead owner


def test_sweep_kills_what_a_killed_instance_left_running(
    tmp_path: Path, tool_path: str, started: Started
) -> None:
    data_dir, script = tmp_path / "data", tmp_path / "hang.nu"
    script.write_text(HANG)
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    config = {
        "run_id": run_id,
        "data_dir": str(data_dir),
        "workdir": str(tmp_path),
        "nu": str(NU),
        "path": tool_path,
        "script": str(script),
    }
    instance = subprocess.Popen(
        [sys.executable, "-c", DEAD_INSTANCE, json.dumps(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started.add(instance.pid)
        pid_file = data_dir / "runs" / run_id / "0" / "hang" / "1" / "nu.pid"
        wait_until(lambda: pid_file.is_file() and pid_file.read_text().strip() != "")
        nu_pid = int(pid_file.read_text())
        wait_until(lambda: any(comm(pid) == "sleep" for pid in group(nu_pid)))
        members = group(nu_pid)
        for pid in members:
            started.add(pid)
        (registration,) = registrations(data_dir)
        record = OrphanRecord.model_validate_json(registration.read_bytes())
        assert (record.pid, record.pgid, record.owner_pid) == (nu_pid, nu_pid, instance.pid)
        assert (record.run_id, record.node, record.attempt) == (run_id, "hang", 1)
        assert record.starttime == starttime(nu_pid)

        instance.send_signal(signal.SIGKILL)
        instance.wait(timeout=10)
        time.sleep(0.2)
        assert all(alive(pid) for pid in members), "SIGKILL of the owner left them running"
        assert registrations(data_dir) == [registration]

        swept = sweep_orphans(data_dir)

        assert swept == [record]
        wait_until(lambda: not any(alive(pid) for pid in members), timeout=3)
        assert registrations(data_dir) == []
        assert sweep_orphans(data_dir) == []
    finally:
        if instance.poll() is None:
            instance.kill()
            instance.wait()


# ---------------------------------------------------------------- a live owner


async def test_live_owner_is_left_alone_and_unregisters_when_done(
    tmp_path: Path, tool_path: str
) -> None:
    script = tmp_path / "hang.nu"
    script.write_text(HANG)
    ctx = ExecutionContext(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        tenant="acme",
        stage=0,
        data_dir=tmp_path / "data",
        workdir=tmp_path,
        nu_bin=NU,
        nu_path=tool_path,
        kill_grace=0.5,
    )
    hang = ActionNode(id="hang", handler=script, timeout=60)
    task = asyncio.create_task(run_node(hang, {}, {}, ctx))
    pid_file = ctx.data_dir / "runs" / ctx.run_id / "0" / "hang" / "1" / "nu.pid"
    try:
        deadline = time.monotonic() + 15
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "nu did not start"
            await asyncio.sleep(0.02)
        nu_pid = int(pid_file.read_text())
        (registration,) = registrations(ctx.data_dir)
        record = OrphanRecord.model_validate_json(registration.read_bytes())
        assert record.owner_pid == os.getpid()

        assert sweep_orphans(ctx.data_dir) == []
        assert alive(nu_pid) and registrations(ctx.data_dir) == [registration]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    wait_until(lambda: not alive(nu_pid), timeout=3)
    assert registrations(ctx.data_dir) == [], "the group is dead: its registration goes"


# ---------------------------------------------------------------- what must never be killed


def write_record(data_dir: Path, **fields: object) -> Path:
    folder = data_dir / "proc"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fields['pid']}.json"
    path.write_text(json.dumps(fields))
    return path


def dead_owner() -> dict[str, int]:
    """This process, with a start time it does not have: the pid was "reused"."""
    own = starttime(os.getpid())
    assert own is not None
    return {"owner_pid": os.getpid(), "owner_starttime": own + 1}


def test_a_reused_leader_pid_is_never_killed(tmp_path: Path, started: Started) -> None:
    # A group leader we started, but recorded with another start time: it is not the
    # process the dead owner started, so it must survive the sweep.
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started.add(bystander.pid)
        real = starttime(bystander.pid)
        assert real is not None
        path = write_record(
            tmp_path,
            pid=bystander.pid,
            pgid=bystander.pid,
            starttime=real - 1,
            run_id="r",
            node="n",
            attempt=1,
            **dead_owner(),
        )
        swept = sweep_orphans(tmp_path)
        assert [r.pid for r in swept] == [bystander.pid] and not path.exists()
        time.sleep(0.1)
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_leader_gone_kills_only_members_with_the_attempts_environment(
    tmp_path: Path, started: Started
) -> None:
    # The leader exited (and was reaped) while a member it left behind runs on; a member
    # without the attempt's environment (`env -i`) is not provably ours and is spared.
    env = {
        "PATH": os.environ["PATH"],
        "STRATUM_RUN_ID": "run-x",
        "STRATUM_NODE": "n",
        "STRATUM_ATTEMPT": "2",
    }
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; env -i sleep 61 & echo $!; read x"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        assert leader.stdout is not None and leader.stdin is not None
        ours, stranger = int(leader.stdout.readline()), int(leader.stdout.readline())
        for pid in (leader.pid, ours, stranger):
            started.add(pid)
        leader_started = starttime(leader.pid)
        leader.stdin.close()  # `read` returns: the leader exits
        leader.wait(timeout=5)
        assert alive(ours) and alive(stranger)
        write_record(
            tmp_path,
            pid=leader.pid,
            pgid=leader.pid,
            starttime=leader_started,
            run_id="run-x",
            node="n",
            attempt=2,
            **dead_owner(),
        )

        assert [r.pid for r in sweep_orphans(tmp_path)] == [leader.pid]

        wait_until(lambda: not alive(ours), timeout=3)
        assert alive(stranger)
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()


def test_garbage_files_are_logged_and_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "proc"
    folder.mkdir()
    own = starttime(os.getpid())
    valid = {
        "pid": 4242,
        "pgid": 4242,
        "starttime": 1,
        "run_id": "r",
        "node": "n",
        "attempt": 1,
        **dead_owner(),
    }
    garbage = {
        "binary.json": b"\x00\xff garbage",
        "partial.json": json.dumps(valid).encode()[:30],
        "list.json": b"[1, 2, 3]",
        "pid-zero.json": json.dumps({**valid, "pid": 0, "pgid": 0}).encode(),
        "pid-one.json": json.dumps({**valid, "pid": 1, "pgid": 1}).encode(),
        "other-group.json": json.dumps({**valid, "pgid": os.getpgrp()}).encode(),
        "negative.json": json.dumps({**valid, "pid": -5, "pgid": -5}).encode(),
        "huge.json": json.dumps({**valid, "pid": 2**70, "pgid": 2**70}).encode(),
        "extra.json": json.dumps({**valid, "unexpected": True}).encode(),
        "surrogate.json": json.dumps({**valid, "run_id": "\ud800"}).encode(),
        "empty.json": b"",
    }
    for name, content in garbage.items():
        (folder / name).write_bytes(content)
    (folder / "dir.json").mkdir()
    (folder / "notes.txt").write_text("not a registration")
    stale, fresh = folder / ".1.aaaa.tmp", folder / ".2.bbbb.tmp"
    stale.write_text("{")
    fresh.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    live = folder / "live.json"
    live.write_text(json.dumps({**valid, "owner_starttime": own}))

    with caplog.at_level(logging.WARNING, logger="stratum.executor"):
        assert sweep_orphans(tmp_path) == []

    assert sorted(p.name for p in folder.iterdir()) == [
        ".2.bbbb.tmp",
        "dir.json",
        "live.json",
        "notes.txt",
    ]
    assert all(f"{name}" in caplog.text for name in garbage)
    assert alive(os.getpid())
    assert sweep_orphans(tmp_path / "no-such-dir") == []
