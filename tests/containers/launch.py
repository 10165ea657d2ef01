"""Starting Stratum's pieces either as containers of the local images (testcontainers'
`DockerContainer`, host networking, loopback ports) or as local processes of the same
binaries; both behind one small interface, so the tests cannot tell which they got.

`mode()` decides once per session: `container` when a Docker engine answers and the three
images exist, else `local`; `STRATUM_TEST_MODE=container|local` forces one (container
requested but unavailable is an error, never a silent fallback).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IMAGE_TAG = os.environ.get("STRATUM_IMAGE_TAG", "latest")
IMAGES = {
    "functions": f"stratum-functions:{IMAGE_TAG}",
    "nats": f"stratum-nats:{IMAGE_TAG}",
    "openbao": f"stratum-openbao:{IMAGE_TAG}",
}
STRATUM_UID = 999  # the functions image's user (deploy/images/Containerfile.functions)
START_SECONDS = 60.0
Mode = Literal["container", "local"]
# no reaper container: it would have to be pulled, and the fixtures remove what they start
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@dataclass(frozen=True)
class Decision:
    mode: Mode
    why: str
    error: str = ""  # container mode requested but not possible: tests fail with this


def container_problem() -> str:
    """Why container mode is impossible here ("" when it is possible)."""
    try:
        import docker
    except ImportError as error:
        return f"the docker SDK is not installed ({error}); run `make install`"
    try:
        client = docker.from_env(timeout=5)
    except Exception as error:
        return f"no Docker engine answers ({type(error).__name__}: {error})"
    try:
        client.ping()
        missing = []
        for image in IMAGES.values():
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
        if missing:
            return f"image(s) {', '.join(missing)} missing: run `make images`"
    except Exception as error:
        return f"the Docker engine does not answer ({type(error).__name__}: {error})"
    finally:
        client.close()
    return ""


@functools.cache
def mode() -> Decision:
    requested = os.environ.get("STRATUM_TEST_MODE", "")
    if requested == "local":
        return Decision("local", "STRATUM_TEST_MODE=local")
    if requested not in ("", "container"):
        return Decision("local", "", f"STRATUM_TEST_MODE={requested!r}: use container or local")
    problem = container_problem()
    if requested == "container":
        error = f"STRATUM_TEST_MODE=container, but {problem}" if problem else ""
        return Decision("container", "STRATUM_TEST_MODE=container", error)
    if problem:
        return Decision("local", problem)
    return Decision("container", "a Docker engine answers and the images exist")


def describe(decision: Decision) -> str:
    if decision.error:
        return f"stratum container tests: cannot run: {decision.error}"
    return f"stratum container tests: {decision.mode.upper()} mode ({decision.why})"


class Process(Protocol):
    """One started piece: its output, a hard restart, a stop."""

    def logs(self) -> str: ...

    def restart(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Spec:
    """What to start, in terms both modes understand."""

    name: str
    image: str  # container mode: the image (its entrypoint runs `args`)
    binary: str  # local mode: the binary that runs `args`
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: str = ""  # a regex the output shows once it is ready (counted across restarts)


def _wait_for(
    process: Process, pattern: str, times: int, timeout: float, alive: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern, re.MULTILINE)
    while time.monotonic() < deadline:
        if len(regex.findall(process.logs())) >= times:
            return
        if not alive():
            break
        time.sleep(0.1)
    tail = process.logs()[-3000:]
    raise AssertionError(f"not ready (/{pattern}/ x{times}) within {timeout}s; output:\n{tail}")


class Launcher(Protocol):
    mode: Mode

    def path(self, host: Path, inside: str, *, writable: bool = False) -> str:
        """Where the started process sees `host` (a bind mount at `inside` in a
        container; itself locally)."""
        ...

    def start(self, spec: Spec) -> Process: ...


class ContainerProcess:
    def __init__(self, spec: Spec, mounts: list[tuple[str, str, str]]) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        self.spec = spec
        container = DockerContainer(spec.image, network_mode="host")
        container.with_command(spec.args)
        for key, value in spec.env.items():
            container.with_env(key, value)
        for host, inside, rw in mounts:
            container.with_volume_mapping(host, inside, rw)
        if spec.ready:
            wait = LogMessageWaitStrategy(spec.ready)
            container.waiting_for(
                wait.with_startup_timeout(int(START_SECONDS)).with_poll_interval(0.1)
            )
        self.container = container
        try:
            container.start()
        except BaseException:
            container.stop()  # created, maybe running: removed all the same
            raise

    def _alive(self) -> bool:
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return wrapped.status in ("created", "running", "restarting")

    def _wait(self, times: int) -> None:
        if self.spec.ready:
            _wait_for(self, self.spec.ready, times, START_SECONDS, self._alive)

    def logs(self) -> str:
        stdout, stderr = self.container.get_logs()
        return (stdout + stderr).decode(errors="replace")

    def restart(self) -> None:
        """`docker restart -t 0`: the container is killed (SIGKILL) and started again."""
        seen = len(re.findall(self.spec.ready, self.logs(), re.MULTILINE))
        self.container.get_wrapped_container().restart(timeout=0)
        self._wait(seen + 1)

    def stop(self) -> None:
        self.container.stop()  # removes it (and its anonymous volumes)


class LocalProcess:
    def __init__(self, spec: Spec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._spawn()
        try:
            self._wait(1)
        except BaseException:
            self._kill()
            raise

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUM_")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.spec.binary, *self.spec.args],
                env=env | self.spec.env,
                cwd=ROOT,  # as the image's WORKDIR: nickel/ and deploy/ beside it
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait(self, times: int) -> None:
        if self.spec.ready:
            _wait_for(self, self.spec.ready, times, START_SECONDS, self._alive)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def restart(self) -> None:
        """kill -9, then the same command again."""
        seen = len(re.findall(self.spec.ready, self.logs(), re.MULTILINE))
        self._kill()
        self._spawn()
        self._wait(seen + 1)

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self._kill()


def _share(path: Path, writable: bool) -> None:
    """Let the image's non-root user read (or write) `path`."""
    for item in [path, *path.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(item, STRATUM_UID, STRATUM_UID)
        else:
            extra = 0o777 if writable else (0o755 if item.is_dir() else 0o644)
            item.chmod(item.stat().st_mode | extra)


class ContainerLauncher:
    mode: Mode = "container"

    def __init__(self) -> None:
        self.mounts: list[tuple[str, str, str]] = []

    def path(self, host: Path, inside: str, *, writable: bool = False) -> str:
        _share(host, writable)
        self.mounts.append((str(host), inside, "rw" if writable else "ro"))
        return inside

    def start(self, spec: Spec) -> Process:
        mounts, self.mounts = self.mounts, []
        return ContainerProcess(spec, mounts)


class LocalLauncher:
    mode: Mode = "local"

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def path(self, host: Path, inside: str, *, writable: bool = False) -> str:
        return str(host)

    def start(self, spec: Spec) -> Process:
        return LocalProcess(spec, self.log_dir)


def launcher(decision: Decision, log_dir: Path) -> Launcher:
    return ContainerLauncher() if decision.mode == "container" else LocalLauncher(log_dir)
