"""A registry of running process groups, so a restarted instance can kill what a dead one
left behind.

A node's script runs in its own session, so when the instance that started it is killed
(SIGKILL, OOM) the script lives on, re-parented to init, and may keep doing side effects
for a run that is now handled elsewhere. `GroupProcess` writes `<data_dir>/proc/<pid>.json`
while a group runs; `sweep_orphans` (at start-up) kills the groups of owners that are gone.

Pids are reused, so a process is identified by (pid, start time): both the owner's
liveness and the group's identity are checked against the start time recorded with them.
Instances sharing a data_dir must share a pid namespace (one host).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger("stratum.executor")

_PID = Field(gt=1, le=4_194_304)  # never 0 or 1 (killpg(0) is our own group); pid_max
_ID = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # as bundle.safe_component allows
_STALE_TMP = 60.0  # seconds: a registration is written in microseconds


class OrphanRecord(BaseModel):
    """One registry file: a process group and the instance that started it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int = _PID
    pgid: int = _PID
    starttime: int = Field(ge=0)  # field 22 of /proc/<pid>/stat, clock ticks since boot
    owner_pid: int = Field(ge=1)  # only compared, never signalled: may be a container's 1
    owner_starttime: int = Field(ge=0)
    run_id: str = _ID
    node: str = _ID
    attempt: int = Field(ge=1)

    @model_validator(mode="after")
    def _leads_its_group(self) -> OrphanRecord:
        # every group is started with start_new_session: anything else is not ours
        if self.pgid != self.pid:
            raise ValueError("pgid differs from pid")
        return self


@dataclass(frozen=True, slots=True)
class GroupLabel:
    """What to register a group under: where, and for which attempt of which node."""

    data_dir: Path
    run_id: str
    node: str
    attempt: int


def register(label: GroupLabel, pid: int) -> Path | None:
    """Record the group led by `pid`; the path to remove when it is gone, or None if it
    could not be written (logged: the registry is a safety net, not a reason to fail)."""
    folder = label.data_dir / "proc"
    path = folder / f"{pid}.json"
    tmp = folder / f".{pid}.{secrets.token_hex(4)}.tmp"
    try:
        started = starttime(pid)
        owner = _own_starttime(os.getpid())
        if started is None or owner is None:
            return None  # the leader is already gone (and reaped): nothing to leave behind
        record = OrphanRecord(
            pid=pid,
            pgid=pid,
            starttime=started,
            owner_pid=os.getpid(),
            owner_starttime=owner,
            run_id=label.run_id,
            node=label.node,
            attempt=label.attempt,
        )
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(record.model_dump_json())
        tmp.replace(path)  # a sweep never reads a half-written file
    except (OSError, ValueError) as exc:  # ValueError: a record /proc cannot describe
        log.warning("cannot register process group %d in %s: %s", pid, folder, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return None
    return path


def unregister(path: Path | None) -> None:
    """Remove a registration once its group has been killed."""
    if path is not None:
        _remove(path)


def sweep_orphans(data_dir: Path) -> list[OrphanRecord]:
    """Kill the process groups whose owning instance is gone; return their records.

    A group is killed (SIGKILL) only if its leader still runs with the recorded start
    time; if the leader has exited, only the members that carry the attempt's
    STRATUM_RUN_ID/NODE/ATTEMPT environment are. Files of live owners are left alone;
    unreadable files are logged and removed. Never raises on what it finds.
    """
    folder = data_dir / "proc"
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    swept = []
    for path in entries:
        if path.suffix == ".tmp":
            _remove_stale_tmp(path)
            continue
        if path.suffix != ".json":
            continue
        try:
            record = OrphanRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            continue  # its owner removed it meanwhile
        except (OSError, ValidationError) as exc:
            log.warning("removing unreadable process registration %s: %s", path, exc)
            _remove(path)
            continue
        try:
            if _runs(record.owner_pid, record.owner_starttime):
                continue
            _kill(record)
        except OSError as exc:  # /proc unreadable (hidepid?): keep the file, try next time
            log.warning("cannot check process registration %s: %s", path, exc)
            continue
        _remove(path)
        swept.append(record)
    return swept


def starttime(pid: int) -> int | None:
    """Start time of `pid` (clock ticks since boot), or None if there is no such process."""
    stat = _stat(pid)
    return None if stat is None else stat[2]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, starttime) of `pid`, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


@functools.lru_cache(maxsize=4)  # keyed by pid: a forked child has its own
def _own_starttime(pid: int) -> int | None:
    return starttime(pid)


def _runs(pid: int, started: int) -> bool:
    """Whether (`pid`, `started`) is a live process (a zombie has finished)."""
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in ("Z", "X")


def _kill(record: OrphanRecord) -> None:
    where = f"{record.run_id}/{record.node}/{record.attempt}"
    if starttime(record.pid) == record.starttime:
        # the leader (maybe a zombie) holds the group id: the group is the one we started
        if record.pgid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pgid, signal.SIGKILL)
                log.warning("killed orphaned process group %d of %s", record.pgid, where)
        return
    for pid in _members(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            log.warning("killed orphaned process %d of %s", pid, where)


def _members(record: OrphanRecord) -> list[int]:
    """Processes still in the group of an exited leader that are provably this attempt's:
    a pid reused as a new group id would not carry its environment."""
    wanted = {
        b"STRATUM_RUN_ID": record.run_id.encode(),
        b"STRATUM_NODE": record.node.encode(),
        b"STRATUM_ATTEMPT": str(record.attempt).encode(),
    }
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            stat = _stat(pid)
            if stat is None or stat[1] != record.pgid or stat[2] < record.starttime:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        variables = {}
        for item in environ.split(b"\0"):
            name, _, value = item.partition(b"=")
            variables[name] = value
        if all(variables.get(name) == value for name, value in wanted.items()):
            found.append(pid)
    return found


def _remove_stale_tmp(path: Path) -> None:
    try:
        if time.time() - path.stat().st_mtime > _STALE_TMP:
            path.unlink()
    except OSError:
        pass


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove process registration %s: %s", path, exc)
