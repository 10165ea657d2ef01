"""`stratum up` as a separate process, for the tests that kill it with SIGKILL and start it
again (the chaos suite, cancels interrupted by a crash), and the scripts it leaves behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
STRATUM = str(Path(sys.executable).parent / "stratum")


def up_env(
    data_dir: Path, definitions: Path, nats_url: str, prefix: str, **more: str
) -> dict[str, str]:
    """The environment of a `stratum up` of the test's own: its data, definitions, the
    session's nats-server under its own subject prefix, no file watching, plain events
    (`more`: further STRATUM_* settings)."""
    return dict(
        os.environ,
        STRATUM_DATA_DIR=str(data_dir),
        STRATUM_DEFINITIONS=str(definitions),
        STRATUM_NATS_URL=nats_url,
        STRATUM_SUBJECT_PREFIX=prefix,
        STRATUM_WATCH="false",
        # the tests publish plain events, as any client (and the example policies let
        # unsigned callers of acme steer its runs)
        STRATUM_REQUIRE_SIGNATURES="false",
        **more,
    )


class Instance:
    """`stratum up` as a process we start, kill and start again."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env, self.data_dir = env, data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.http = ""

    async def start(self, crash_at: str = "") -> None:
        (self.data_dir / "endpoint.json").unlink(missing_ok=True)  # left by a killed one
        env = dict(self.env, STRATUM_CRASH_AT=crash_at)
        with (self.data_dir / "up.log").open("ab") as log:
            self.process = subprocess.Popen(
                [STRATUM, "up"], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            endpoint = self.data_dir / "endpoint.json"
            if endpoint.is_file():
                self.http = orjson.loads(endpoint.read_bytes())["http"]
                return
            if self.process.poll() is not None:
                if crash_at:  # died at its crash point while starting: that is the test
                    return
                log_text = (self.data_dir / "up.log").read_text()[-3000:]
                raise AssertionError(f"stratum up exited while starting:\n{log_text}")
            await asyncio.sleep(0.05)
        raise AssertionError("stratum up did not come up within 60 s")

    async def died_within(self, seconds: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return True
            await asyncio.sleep(0.05)
        return False

    def kill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


def live_scripts(data_dir: Path) -> list[int]:
    """Processes still running a script of this test (their env names our data dir)."""
    marker = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
