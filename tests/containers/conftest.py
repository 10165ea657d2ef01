"""Fixtures of the container suite: NATS (JetStream, NKey users), OpenBao and Stratum,
as containers of the local images (`make images`) or as local processes of the same
binaries (tests/containers/launch.py decides which, once per session, and says so).

- `nats`: a nats-server run from the configuration `stratum.bus.deployment` writes (every
  function its own NKey user); its URL, the seeds folder, the subject prefix.
- `openbao`: a dev OpenBao seeded from deploy/dev-secrets.json; address and root token.
- `start_stratum(...)`: the functions image (or a local process) running `stratum up`
  against those, or any other `stratum` command; `stratum` is `stratum up` as is.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from stratum.bus.deployment import SEEDS, write_deployment
from stratum.bus.local_server import free_port
from stratum.bus.subjects import Subjects
from stratum.secrets import SecretBroker, load_seed, seed
from stratum.secrets.dev_server import bao_binary
from stratum_host.registry import placed
from tests.conftest import make_settings
from tests.containers.launch import (
    BIN,
    IMAGES,
    ROOT,
    Decision,
    Process,
    Spec,
    describe,
    launcher,
    mode,
)

_HEADER_SHOWN = False


def pytest_report_header(config: pytest.Config) -> str:
    global _HEADER_SHOWN
    _HEADER_SHOWN = True
    return describe(mode())


def pytest_collection_finish(session: pytest.Session) -> None:
    # the header hook runs only when this folder is named on the command line (pytest
    # reads only the top conftest before collecting): say it once anyway
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not _HEADER_SHOWN and reporter is not None:
        reporter.write_line(describe(mode()))


@pytest.fixture(scope="session")
def decision() -> Decision:
    chosen = mode()
    if chosen.error:
        pytest.fail(describe(chosen), pytrace=False)
    return chosen


@pytest.fixture(autouse=True)
def _announce(decision: Decision, record_property: Callable[[str, object], None]) -> None:
    print(describe(decision))
    record_property("stratum_test_mode", decision.mode)


@dataclass(frozen=True)
class Nats:
    url: str
    seeds: Path  # <identity>.seed for the core user and each function
    prefix: str
    process: Process

    def seed(self, identity: str) -> str:
        return (self.seeds / f"{identity}.seed").read_text().strip()


@dataclass(frozen=True)
class OpenBao:
    addr: str
    token: str


@dataclass(frozen=True)
class Stratum:
    http: str  # base URL: the HTTP API (`up`) or the CloudEvents endpoints (`function serve`)
    data_dir: Path  # on this machine (bind-mounted in container mode)
    process: Process

    def restart(self) -> None:
        """Kill it hard (docker restart -t 0 / kill -9) and start it again; returns when
        it is up again."""
        self.process.restart()

    def logs(self) -> str:
        return self.process.logs()


@pytest.fixture()
def nats(decision: Decision, tmp_path: Path) -> Iterator[Nats]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    subjects = Subjects(prefix)
    port = free_port("127.0.0.1")
    start = launcher(decision, tmp_path)
    store = tmp_path / "jetstream"
    store.mkdir()
    functions = placed(make_settings(tmp_path, "", subject_prefix=prefix), subjects)
    config = write_deployment(
        tmp_path / "nats",
        functions,
        subjects,
        listen=f"127.0.0.1:{port}",
        store_dir=start.path(store, "/data/jetstream", writable=True),
    )
    seen = start.path(config, "/etc/nats/nats-server.conf")
    spec = Spec(
        "nats",
        IMAGES["nats"],
        str(BIN / "nats-server"),
        ["-c", seen],
        ready="Server is ready",
    )
    process = start.start(spec)
    try:
        yield Nats(f"nats://127.0.0.1:{port}", tmp_path / "nats" / SEEDS, prefix, process)
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def openbao(
    decision: Decision, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OpenBao]:
    port = free_port("127.0.0.1")
    token = secrets.token_urlsafe(24)
    start = launcher(decision, tmp_path_factory.mktemp("openbao"))
    spec = Spec(
        "openbao",
        IMAGES["openbao"],
        str(bao_binary()),
        [
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        env={"HOME": "/tmp"},
        ready="path=secret/",  # KV v2 mounted
    )
    process = start.start(spec)
    addr = f"http://127.0.0.1:{port}"
    broker = SecretBroker(addr, token)
    try:
        await seed(broker, load_seed(ROOT / "deploy" / "dev-secrets.json"))
        yield OpenBao(addr, token)
    finally:
        await broker.close()
        process.stop()


StartStratum = Callable[..., Stratum]


@pytest.fixture()
def start_stratum(
    decision: Decision, tmp_path: Path, openbao: OpenBao, nats: Nats
) -> Iterator[StartStratum]:
    """Start `stratum <command>` (default `up`) with the functions image (or locally),
    against `nats` and `openbao`, its data dir in tmp_path; `definitions`: a folder of
    workflows instead of the image's examples. Stopped (and removed) at the end."""
    started: list[Process] = []

    def start(
        command: tuple[str, ...] = ("up",),
        *,
        definitions: Path | None = None,
        ready: str = "Stratum is up",
        port: int | None = None,
    ) -> Stratum:
        run = launcher(decision, tmp_path)
        data_dir = tmp_path / f"data-{len(started)}"
        data_dir.mkdir()
        http_port = port or free_port("127.0.0.1")
        env = {
            "STRATUM_NATS_URL": nats.url,
            "STRATUM_NATS_SEEDS": run.path(nats.seeds, "/run/stratum/seeds"),
            "STRATUM_SUBJECT_PREFIX": nats.prefix,
            "STRATUM_VAULT_ADDR": openbao.addr,
            "STRATUM_VAULT_TOKEN": openbao.token,
            "STRATUM_HTTP_HOST": "127.0.0.1",
            "STRATUM_HTTP_PORT": str(http_port),
            "STRATUM_DATA_DIR": run.path(data_dir, "/var/lib/stratum/data", writable=True),
            # tests publish plain events as any NATS client (and read the API unsigned)
            "STRATUM_REQUIRE_SIGNATURES": "false",
            "STRATUM_DEV_PUBLISHERS": "",
            "STRATUM_WATCH": "false",
        }
        if definitions is not None:
            env["STRATUM_DEFINITIONS"] = run.path(definitions, "/opt/stratum/definitions")
        spec = Spec(
            f"stratum-{len(started)}",
            IMAGES["functions"],
            str(BIN / "stratum"),
            list(command),
            env=env,
            ready=ready,
        )
        process = run.start(spec)
        started.append(process)
        return Stratum(f"http://127.0.0.1:{http_port}", data_dir, process)

    try:
        yield start
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture()
def stratum(start_stratum: StartStratum) -> Stratum:
    """`stratum up` against `nats` and `openbao`, with the image's example workflows."""
    return start_stratum()
