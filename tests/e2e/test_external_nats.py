"""A deployment's own nats-server (as compose or Kubernetes runs it), configured by
`stratum.bus.deployment`: Stratum connects with `nats_url` + `nats_seeds`, each function as
its own NKey user, and a run goes through; a function's user may do only its own job and
an unknown key cannot connect at all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import nkeys
import orjson
import pytest

from stratum.bus.deployment import SEEDS, write_deployment
from stratum.bus.local_server import free_port
from stratum.bus.nkeys import CORE_IDENTITY
from stratum.bus.subjects import Subjects
from stratum.ids import run_id
from stratum_host.registry import placed
from tests.conftest import ROOT, Vault, eventually, make_settings, stop_process
from tests.e2e.conftest import running

NATS_SERVER = Path(sys.executable).parent / "nats-server"
STRATUM = Path(sys.executable).parent / "stratum"


@pytest.fixture()
def deployment(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(nats url, seeds folder, subject prefix) of a nats-server started from the files
    `write_deployment` wrote; stopped by its PID."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = make_settings(tmp_path, "", subject_prefix=prefix)
    port = free_port("127.0.0.1")
    config = write_deployment(
        tmp_path / "nats",
        placed(settings, Subjects(prefix)),
        Subjects(prefix),
        listen=f"127.0.0.1:{port}",
        store_dir=str(tmp_path / "jetstream"),
    )
    process = subprocess.Popen(
        [str(NATS_SERVER), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"nats://127.0.0.1:{port}", tmp_path / "nats" / SEEDS, prefix
    finally:
        stop_process(process)


async def refused(url: str, seed: str, subject: str) -> str:
    """What the server says to `seed`'s user publishing on `subject` ("" if nothing)."""
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error))

    try:
        nc = await nats.connect(
            url, nkeys_seed_str=seed, error_cb=collect, allow_reconnect=False, connect_timeout=3
        )
    except Exception as error:
        return str(error).lower()
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return " ".join(errors).lower()


@pytest.mark.asyncio(loop_scope="session")
async def test_functions_run_as_their_own_users_on_a_deployments_nats(
    tmp_path: Path, deployment: tuple[str, Path, str], openbao: Vault
) -> None:
    url, seeds, prefix = deployment
    settings = make_settings(
        tmp_path,
        url,
        subject_prefix=prefix,
        nats_seeds=str(seeds),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )

    async def server_up() -> bool:
        try:
            nc = await nats.connect(
                url,
                nkeys_seed_str=(seeds / f"{CORE_IDENTITY}.seed").read_text().strip(),
                allow_reconnect=False,
                connect_timeout=1,
            )
        except Exception:
            return False
        await nc.close()
        return True

    await eventually(server_up, timeout=15)
    async with running(settings, http=False) as harness:
        run = await harness.emit("crate.push", {"source": "nickel/examples/sample-crate"})
        view = await harness.finished(run)
        assert view["status"] == "Succeeded", view.get("error")

    projector = (seeds / "projector.seed").read_text().strip()
    # the projector only reads: it may not publish a publisher's event, nor a run event
    assert "permissions violation" in await refused(url, projector, f"{prefix}.events.acme.x")
    assert "permissions violation" in await refused(url, projector, f"{prefix}.run.succeeded")
    stranger = nkeys.from_seed(bytearray(nkeys_seed())).seed.decode()
    assert "authorization violation" in await refused(url, stranger, f"{prefix}.events.acme.x")


def nkeys_seed() -> bytes:
    from stratum.bus.nkeys import new_user_seed

    return new_user_seed().encode()


@pytest.mark.asyncio(loop_scope="session")
async def test_one_function_runs_by_itself_as_its_own_user(
    tmp_path: Path, deployment: tuple[str, Path, str]
) -> None:
    """`stratum function run ingest` (a compose service, a KEDA Deployment) takes a
    publisher's event from the deployment's NATS and announces the run it accepted."""
    url, seeds, prefix = deployment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUM_", "OTEL_"))}
    env |= {
        "STRATUM_NATS_URL": url,
        "STRATUM_NATS_SEEDS": str(seeds),
        "STRATUM_SUBJECT_PREFIX": prefix,
        "STRATUM_DATA_DIR": str(tmp_path / "ingest-data"),
        "STRATUM_REQUIRE_SIGNATURES": "false",
        "STRATUM_POLICIES": str(ROOT / "tests" / "fixtures" / "policies"),
    }
    process = subprocess.Popen(
        [str(STRATUM), "function", "run", "ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    core = (seeds / f"{CORE_IDENTITY}.seed").read_text().strip()
    ident = str(uuid.uuid4())
    try:
        nc = await nats.connect(url, nkeys_seed_str=core, connect_timeout=5)
        try:
            js = nc.jetstream()

            async def streams_made() -> bool:
                try:
                    await js.stream_info(Subjects(prefix).runs_stream)
                except Exception:
                    return False
                return True

            await eventually(streams_made, timeout=30)
            body = {
                "specversion": "1.0",
                "id": ident,
                "source": "tests",
                "type": "crate.push",
                "data": {"source": "nickel/examples/sample-crate"},
            }
            await js.publish(f"{prefix}.events.acme.crate.push", orjson.dumps(body))
            accepted = await js.pull_subscribe(f"{prefix}.run.accepted", durable=None)
            (message,) = await accepted.fetch(1, timeout=30)
            announced = orjson.loads(message.data)
        finally:
            await nc.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert announced["runid"] == run_id("acme", ident)
    assert announced["data"]["actor"] == "source:tests"
