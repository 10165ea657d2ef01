"""The pure parts of node secrets: policies, TTLs, the forms a secret is masked in, the
declaration model, and how the executor asks a hook for an attempt's credentials."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from functions.compensator.core import StepLease, Undone, step
from stratum.errors import CredentialsError
from stratum.events import CompensateRun, emit
from stratum.executor import Credentials
from stratum.executor._text import Redactor, secret_forms
from stratum.executor.credentials import NO_CREDENTIALS, credentials_for
from stratum.graph.model import ActionNode, SecretRef
from stratum.secrets import data_path, node_policy, token_ttl

REGISTRY = SecretRef(path="stratum/release/registry", key="token", env="REGISTRY_TOKEN")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SIGNING = SecretRef(mount="kv", path="ci/signing", key="key", env="SIGNING_KEY")


def node(*secrets: SecretRef, **fields: object) -> ActionNode:
    return ActionNode(id="upload", handler=Path("/x/upload.nu"), secrets=secrets, **fields)


def test_policy_reads_exactly_the_declared_paths() -> None:
    name, rules = node_policy(node(REGISTRY, SIGNING, REGISTRY.model_copy(update={"env": "B"})))
    assert rules == (
        'path "kv/data/ci/signing" {\n  capabilities = ["read"]\n}\n'
        'path "secret/data/stratum/release/registry" {\n  capabilities = ["read"]\n}\n'
    )
    assert name.startswith("stratum-upload-") and len(name) == len("stratum-upload-") + 12
    assert data_path(SIGNING) == "kv/data/ci/signing"


def test_policy_name_follows_the_rules_not_the_order() -> None:
    assert node_policy(node(REGISTRY, SIGNING)) == node_policy(node(SIGNING, REGISTRY))
    assert node_policy(node(REGISTRY))[0] != node_policy(node(REGISTRY, SIGNING))[0]


@pytest.mark.parametrize(("timeout", "ttl"), [(1, 1), (1.9, 1), (30, 30), (2.5, 2)])
def test_ttl_is_whole_seconds_within_the_timeout(timeout: float, ttl: int) -> None:
    assert token_ttl(timeout) == ttl <= timeout


def test_ttl_below_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="1 s or more"):
        token_ttl(0.5)


def test_declarations_mirror_the_contract() -> None:
    with pytest.raises(ValidationError, match="set by Stratum itself"):
        SecretRef(path="a", key="k", env="STRATUM_RUN_ID")
    with pytest.raises(ValidationError, match="set by Stratum itself"):
        SecretRef(path="a", key="k", env="HOME")
    with pytest.raises(ValidationError, match="pattern"):
        SecretRef(path="a/../b", key="k", env="X")
    with pytest.raises(ValidationError, match="two secrets use one variable"):
        node(REGISTRY, SIGNING.model_copy(update={"env": "REGISTRY_TOKEN"}))
    with pytest.raises(ValidationError, match="at least 1 second"):
        node(REGISTRY, timeout=0.5)
    assert node(timeout=0.5).secrets == ()


def test_secret_forms_cover_common_encodings() -> None:
    value = "tok-en/+= &?"
    found = secret_forms(value)
    assert value in found
    assert base64.b64encode(value.encode()).decode() in found
    assert "tok%2Den%2F%2B%3D%20%26%3F" in found  # every non-alphanumeric (nu --all)
    assert "tok-en%2F%2B%3D+%26%3F" in found  # quote_plus
    assert "tok-en/%2b%3d%20%26%3f" in found  # lower-case hex, `/` kept
    redactor = Redactor(found)
    text = f"a {value} b {base64.b64encode(value.encode()).decode()} c tok%2Den%2F%2B%3D%20%26%3F"
    assert redactor.text(text) == "a *** b *** c ***"
    assert redactor.found(text.encode()) and not redactor.found(b"nothing here")
    assert not Redactor(()) and redactor


def test_credentials_stay_out_of_repr() -> None:
    assert "hunter2" not in repr(Credentials(env={"X": "hunter2"}, lease="acc-1"))


@asynccontextmanager
async def hook_giving(env: dict[str, str]) -> AsyncIterator[Credentials]:
    yield Credentials(env=env, lease="acc-1")


async def test_credentials_for_asks_only_for_nodes_with_secrets() -> None:
    asked: list[str] = []

    @asynccontextmanager
    async def hook(n: ActionNode, key: str) -> AsyncIterator[Credentials]:
        asked.append(key)
        async with hook_giving({"REGISTRY_TOKEN": "v" * 8}) as credentials:
            yield credentials

    async with credentials_for(hook, node(), "r/upload/1") as none:
        assert none is NO_CREDENTIALS
    async with credentials_for(hook, node(REGISTRY), "r/upload/2") as given:
        assert given.env == {"REGISTRY_TOKEN": "v" * 8} and given.lease == "acc-1"
    assert asked == ["r/upload/2"]


async def test_credentials_for_refuses_what_cannot_serve_the_node() -> None:
    with pytest.raises(CredentialsError, match="no secret store is configured"):
        async with credentials_for(None, node(REGISTRY), "k"):
            pass

    @asynccontextmanager
    async def short(n: ActionNode, key: str) -> AsyncIterator[Credentials]:
        async with hook_giving({}) as credentials:
            yield credentials

    with pytest.raises(CredentialsError, match="gave no value for REGISTRY_TOKEN"):
        async with credentials_for(short, node(REGISTRY), "k"):
            pass


def test_compensation_event_carries_no_lease() -> None:
    lease = StepLease(attempt=1, idempotency_key="r/upload/compensate/1", credential_lease="a1")
    done = Undone(status="succeeded", attempts=1, duration_ms=1.0, credential_leases=(lease,))
    cause = emit(
        CompensateRun(failed_stage=1), cause="c", run_id="run-1", tenant="acme", source="t", now=T0
    )
    event = step(cause, 0, 1, "upload", done, T0)
    assert "credential" not in event.model_dump_json()
    assert done.model_dump()["credential_leases"][0]["credential_lease"] == "a1"
