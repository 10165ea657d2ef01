"""Node secrets against a real OpenBao dev server, the real `nu` and real process groups.

Each attempt's credential must read exactly its node's paths, live no longer than the
node's timeout and be revoked however the attempt ends; what the script echoes of its
secret is masked everywhere the executor writes. `RecordingBroker` is the real broker,
also remembering the tokens it issued so a test can try them after the attempt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import hvac
import hvac.exceptions
import orjson
import pytest

from stratum.bus.local_server import free_port
from stratum.errors import ConfigError, DependencyUnavailableError
from stratum.executor import (
    ExecutionContext,
    run_compensation,
    run_node,
)
from stratum.graph.model import ActionNode, RetryPolicy, SecretRef
from stratum.secrets import (
    Lease,
    LocalOpenBao,
    SecretBroker,
    SecretStore,
    load_seed,
    node_policy,
)
from tests.conftest import Vault
from tests.integration.conftest import NU

ROOT = Path(__file__).resolve().parents[2]
LEAK = Path(__file__).parent / "scripts" / "secrets" / "leak.nu"
SCHEMAS: dict[str, dict[str, Any]] = {"result": {"type": "object"}}


class RecordingBroker(SecretBroker):
    """The real broker; keeps each lease it issued and what Vault said of it while alive."""

    def __init__(self, addr: str, token: str) -> None:
        super().__init__(addr, token)
        self.root = hvac.Client(url=addr, token=token)
        self.leases: list[Lease] = []
        self.alive: list[dict[str, Any]] = []

    @asynccontextmanager
    async def lease(self, node: ActionNode, key: str) -> AsyncIterator[Lease]:
        async with super().lease(node, key) as lease:
            self.leases.append(lease)
            found = await asyncio.to_thread(self.root.auth.token.lookup_accessor, lease.accessor)
            self.alive.append(found["data"])
            yield lease


def forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        quote(value, safe=""),
        quote_plus(value),
        "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in value),  # nu's --all
    ]


def assert_clean(text: str, secret: str) -> None:
    for form in forms(secret):
        assert form not in text, f"{form!r} leaked"


def read_with(vault: Vault, token: str, secret: SecretRef) -> Any:
    client = hvac.Client(url=vault.addr, token=token)
    return client.secrets.kv.v2.read_secret_version(
        path=secret.path, mount_point=secret.mount, raise_on_deleted_version=True
    )


def assert_revoked(vault: Vault, broker: RecordingBroker, secret: SecretRef) -> None:
    assert broker.leases
    for lease in broker.leases:
        with pytest.raises(hvac.exceptions.Forbidden):
            read_with(vault, lease.token, secret)
        with pytest.raises(hvac.exceptions.VaultError):  # the token no longer exists
            broker.root.auth.token.lookup_accessor(lease.accessor)


@pytest.fixture
def ctx(tmp_path: Path, tool_path: str) -> ExecutionContext:
    return ExecutionContext(
        run_id=f"run-{uuid.uuid4().hex[:12]}",
        tenant="acme",
        stage=0,
        data_dir=tmp_path / "data",
        workdir=tmp_path / "workspace",
        nu_bin=NU,
        nu_path=tool_path,
        kill_grace=0.3,
    )


@pytest.fixture
async def broker(openbao: Vault) -> AsyncIterator[RecordingBroker]:
    recording = RecordingBroker(openbao.addr, openbao.token)
    yield recording
    await recording.close()


@pytest.fixture
async def secret(openbao: Vault) -> tuple[SecretRef, str]:
    """A fresh secret (its own path, a value with characters every encoding changes)."""
    ref = SecretRef(path=f"tests/{uuid.uuid4().hex}", key="value", env="TEST_SECRET")
    value = f"s3cr3t-{uuid.uuid4().hex}/+= &?"
    await openbao.broker.write(ref.mount, ref.path, {ref.key: value, "unused": "x" * 8})
    return ref, value


def leak(secret: SecretRef, **fields: Any) -> ActionNode:
    fields.setdefault("timeout", 10.0)
    return ActionNode(
        id="leak", handler=LEAK, compensate=LEAK, produces=("result",), secrets=(secret,), **fields
    )


def payload(mode: str) -> dict[str, Any]:
    return {"run": {}, "event": {}, "inputs": {"mode": mode}}


def bundle_text(ctx: ExecutionContext) -> str:
    runs = ctx.data_dir / "runs"
    return "".join(p.read_text(errors="replace") for p in runs.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the dev server


async def test_dev_server_keeps_its_root_token_in_memory(tmp_path: Path) -> None:
    server = LocalOpenBao(tmp_path / "bao")
    started = time.monotonic()
    await server.start()
    try:
        assert time.monotonic() - started < 5
        assert server.process is not None
        pid = server.process.pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert server.token and server.token.encode() not in argv
        assert b"127.0.0.1" in argv  # loopback only
        client = hvac.Client(url=server.url, token=server.token)
        assert client.is_authenticated()
    finally:
        server.stop()
    assert server.process.poll() is not None
    files = [p for p in (tmp_path / "bao").rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["openbao.log"]  # no token helper file
    assert server.token not in files[0].read_text()


# ---------------------------------------------------------------- the credential itself


async def test_credential_reads_only_its_paths_and_lives_at_most_the_timeout(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str]
) -> None:
    ref, value = secret
    other = SecretRef(path=f"tests/{uuid.uuid4().hex}", key="value", env="OTHER_SECRET")
    await openbao.broker.write(other.mount, other.path, {"value": "another-secret"})
    undeclared = SecretRef(path=f"tests/{uuid.uuid4().hex}", key="value", env="NOPE")
    await openbao.broker.write(undeclared.mount, undeclared.path, {"value": "not-yours"})
    node = leak(ref, timeout=2.7).model_copy(update={"secrets": (ref, other)})

    async with broker.credentials(node, "run-1/leak/1") as credentials:
        assert credentials.env == {"TEST_SECRET": value, "OTHER_SECRET": "another-secret"}
        assert value not in repr(credentials)
        (lease,) = broker.leases
        assert credentials.lease == lease.accessor
        assert lease.token not in repr(lease)
        # scoped: its two paths, read only; nothing else, not even its own lookup
        assert read_with(openbao, lease.token, ref)["data"]["data"]["value"] == value
        read_with(openbao, lease.token, other)
        with pytest.raises(hvac.exceptions.Forbidden):
            read_with(openbao, lease.token, undeclared)
        client = hvac.Client(url=openbao.addr, token=lease.token)
        with pytest.raises(hvac.exceptions.Forbidden):
            client.secrets.kv.v2.create_or_update_secret(path=ref.path, secret={"value": "x"})
        with pytest.raises(hvac.exceptions.Forbidden):
            client.auth.token.lookup_self()
        # short-lived: TTL and explicit max TTL of whole seconds within the timeout
        (alive,) = broker.alive
        assert alive["creation_ttl"] == alive["explicit_max_ttl"] == 2 == lease.ttl
        assert 0 < alive["ttl"] <= 2.7
        assert alive["renewable"] is False
        assert alive["policies"] == [node_policy(node)[0]]
        assert alive["meta"] == {"idempotency_key": "run-1/leak/1"}
    assert_revoked(openbao, broker, ref)


# ---------------------------------------------------------------- through the executor


async def test_success_masks_what_the_script_echoes_and_revokes(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, value = secret
    out = await run_node(leak(ref), payload("ok"), SCHEMAS, ctx, credentials=broker.credentials)

    assert out.status == "succeeded", out.error
    # the script had the value: it reports its hash
    assert out.outputs["result"]["sha256"] == hashlib.sha256(value.encode()).hexdigest()
    (attempt,) = out.attempts
    (lease,) = broker.leases
    assert attempt.credential_lease == lease.accessor
    stderr = (attempt.bundle / "stderr.log").read_text()
    assert stderr.count("***") >= 4  # raw, base64 and two percent-encodings, all masked
    manifest = orjson.loads((attempt.bundle / "manifest.json").read_bytes())
    assert "TEST_SECRET" in manifest["env"] and manifest["redacted"] is True
    assert manifest["credential_lease"] == lease.accessor
    assert_clean(bundle_text(ctx) + out.model_dump_json(), value)
    assert_revoked(openbao, broker, ref)


async def test_failure_gives_each_attempt_its_own_credential_and_revokes_all(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, value = secret
    node = leak(ref, retries=RetryPolicy(max=1, backoff=0.05))
    out = await run_node(node, payload("fail"), SCHEMAS, ctx, credentials=broker.credentials)

    assert out.status == "failed"
    assert [a.status for a in out.attempts] == ["failed", "failed"]
    leases = [a.credential_lease for a in out.attempts]
    assert leases == [lease.accessor for lease in broker.leases] and len(set(leases)) == 2
    assert out.error is not None and "upload refused for token ***" in out.error
    stdout = (out.attempts[0].bundle / "stdout.log").read_text()
    assert stdout.startswith("stdout: *** ***")
    assert_clean(bundle_text(ctx) + out.model_dump_json(), value)
    assert_revoked(openbao, broker, ref)


async def test_timeout_revokes_and_the_ttl_never_exceeded_the_timeout(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, value = secret
    out = await run_node(
        leak(ref, timeout=1.5), payload("sleep"), SCHEMAS, ctx, credentials=broker.credentials
    )

    assert out.status == "failed" and out.attempts[0].timed_out
    (alive,) = broker.alive
    assert alive["creation_ttl"] <= 1.5 and alive["explicit_max_ttl"] <= 1.5
    assert out.attempts[0].credential_lease == broker.leases[0].accessor
    assert_clean(bundle_text(ctx) + out.model_dump_json(), value)
    assert_revoked(openbao, broker, ref)


async def test_cancellation_revokes(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, value = secret
    task = asyncio.create_task(
        run_node(leak(ref), payload("sleep"), SCHEMAS, ctx, credentials=broker.credentials)
    )
    started = ctx.data_dir / "runs" / ctx.run_id / "0" / "leak" / "1" / "started"
    deadline = time.monotonic() + 10
    while not started.is_file():
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    manifest = orjson.loads((started.parent / "manifest.json").read_bytes())
    assert manifest["outcome"] == "cancelled"
    assert manifest["credential_lease"] == broker.leases[0].accessor
    assert_clean(bundle_text(ctx), value)
    assert_revoked(openbao, broker, ref)


async def test_a_secret_in_the_outputs_fails_the_node(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, value = secret
    node = leak(ref, retries=RetryPolicy(max=2, backoff=0.05))
    out = await run_node(node, payload("output"), SCHEMAS, ctx, credentials=broker.credentials)

    assert out.status == "failed" and out.outputs == {} and len(out.attempts) == 1
    assert out.error == "node leak: its outputs contain a secret value (terminal: not retried)"
    assert_clean(bundle_text(ctx) + out.model_dump_json(), value)
    assert_revoked(openbao, broker, ref)


async def test_compensation_gets_the_secrets_too(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, value = secret
    out = await run_compensation(
        leak(ref), payload("fail"), ctx, attempt=3, credentials=broker.credentials
    )

    assert out.status == "failed"
    (attempt,) = out.attempts
    assert attempt.idempotency_key == f"{ctx.run_id}/leak/compensate/3"
    assert attempt.credential_lease == broker.leases[0].accessor
    assert broker.alive[0]["meta"] == {"idempotency_key": attempt.idempotency_key}
    assert_clean(bundle_text(ctx) + out.model_dump_json(), value)
    assert_revoked(openbao, broker, ref)


# ---------------------------------------------------------------- when secrets are not to be had


async def test_a_missing_secret_fails_the_attempt_without_running_the_script(
    openbao: Vault, broker: RecordingBroker, ctx: ExecutionContext
) -> None:
    ref = SecretRef(path=f"tests/{uuid.uuid4().hex}", key="value", env="TEST_SECRET")
    node = leak(ref, retries=RetryPolicy(max=2, backoff=0.05))
    out = await run_node(node, payload("ok"), SCHEMAS, ctx, credentials=broker.credentials)

    assert out.status == "failed" and len(out.attempts) == 1  # not found: retrying won't help
    (attempt,) = out.attempts
    assert attempt.error == f"node leak: secrets: cannot read secret/{ref.path}: not found"
    assert (attempt.exit_code, attempt.signal, attempt.credential_lease) == (None, None, None)
    assert sorted(p.name for p in attempt.bundle.iterdir()) == ["manifest.json", "stdin.json"]
    assert_revoked(openbao, broker, ref)  # the credential it was issued is gone too


async def test_a_missing_key_is_named(
    openbao: Vault, broker: RecordingBroker, secret: tuple[SecretRef, str], ctx: ExecutionContext
) -> None:
    ref, _ = secret
    wrong = ref.model_copy(update={"key": "token"})
    out = await run_node(leak(wrong), payload("ok"), SCHEMAS, ctx, credentials=broker.credentials)

    assert out.error == (
        f"node leak: secrets: secret/{ref.path} has no key 'token' (terminal: not retried)"
    )
    assert_revoked(openbao, broker, ref)


async def test_an_unreachable_store_is_retried(ctx: ExecutionContext) -> None:
    ref = SecretRef(path="tests/anything", key="value", env="TEST_SECRET")
    broker = SecretBroker(f"http://127.0.0.1:{free_port()}", "no-token", timeout=2)
    node = leak(ref, retries=RetryPolicy(max=1, backoff=0.05))
    try:
        out = await run_node(node, payload("ok"), SCHEMAS, ctx, credentials=broker.credentials)
    finally:
        await broker.close()

    assert [a.retryable for a in out.attempts] == [True, True]
    assert out.error is not None
    assert "cannot issue a credential: the secret store is not reachable" in out.error


async def test_a_node_with_secrets_needs_a_store(ctx: ExecutionContext) -> None:
    ref = SecretRef(path="tests/anything", key="value", env="TEST_SECRET")
    out = await run_node(leak(ref), payload("ok"), SCHEMAS, ctx)

    assert out.error == (
        "node leak: secrets: the node declares secrets but no secret store is configured "
        "(terminal: not retried)"
    )


# ---------------------------------------------------------------- the store `stratum up` opens


async def test_without_an_address_a_seeded_dev_store_is_started(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text('{"secrets": [{"path": "demo/app", "data": {"token": "placeholder"}}]}')
    store = await SecretStore.open("", "", tmp_path / "openbao", seed_file)
    try:
        assert store.server is not None and store.addr == store.server.url
        ref = SecretRef(path="demo/app", key="token", env="APP_TOKEN")
        async with store.broker.credentials(leak(ref), "run/leak/1") as credentials:
            assert credentials.env == {"APP_TOKEN": "placeholder"}
    finally:
        await store.stop()
    assert store.server.process is not None and store.server.process.poll() is not None


async def test_a_configured_store_is_checked_at_start(openbao: Vault, tmp_path: Path) -> None:
    store = await SecretStore.open(openbao.addr, openbao.token, tmp_path, None)
    assert store.server is None
    await store.stop()
    with pytest.raises(ConfigError, match="vault_token is empty"):
        await SecretStore.open(openbao.addr, "", tmp_path, None)
    with pytest.raises(ConfigError, match="refuses vault_token: permission denied"):
        await SecretStore.open(openbao.addr, "not-a-token", tmp_path, None)
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DependencyUnavailableError, match=f"Vault at {nowhere} is not reachable"):
        await SecretStore.open(nowhere, "t", tmp_path, None)


def test_a_malformed_seed_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text('{"secrets": [{"path": "a/../b", "data": {}}]}')
    with pytest.raises(ConfigError, match=r"seed\.json: not a seed file of secrets"):
        load_seed(bad)
