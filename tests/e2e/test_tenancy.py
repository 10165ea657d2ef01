"""Tenants against the real stack: a tenant at its concurrent-run limit has its next runs
wait queued and run in turn, an event over the tenant's rate waits or is refused with the
reason (never dropped), and a tenant's reads never show another tenant's runs."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Vault, eventually, make_settings
from tests.e2e.conftest import Harness, running

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]
STRATUM = str(Path(sys.executable).parent / "stratum")

NAP = """
let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "nap", trigger = "nap.start", produces = ["rested"], handler = "nap.nu", timeout = 30 },
  ],
  capabilities = { rested = schema.object { ms = schema.integer } },
}
"""
NAP_SCRIPT = """def main [] {
  let i = ($in | from json)
  sleep ($i.event.ms * 1ms)
  {rested: {ms: $i.event.ms}} | to json -r
}
"""


@asynccontextmanager
async def limited(tmp_path: Path, openbao: Vault, limits: dict[str, Any]) -> AsyncIterator[Harness]:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "nap.ncl").write_text(NAP)
    (definitions / "nap.nu").write_text(NAP_SCRIPT)
    settings = make_settings(
        tmp_path,
        "",  # its own nats-server, where each function may publish only what it declares
        nats_auth=True,
        definitions=str(definitions),
        tenant_limits=limits,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )
    async with running(settings) as harness:
        yield harness


async def history_types(stratum: Harness, run: str) -> list[str]:
    return [item["type"] for item in await stratum.store.history(run)]


async def test_runs_beyond_the_limit_wait_queued_then_run_in_turn(
    tmp_path: Path, openbao: Vault
) -> None:
    async with limited(tmp_path, openbao, {"acme": {"max_concurrent_runs": 1}}) as stratum:
        first = await stratum.emit("nap.start", {"ms": 1500})

        async def in_progress() -> bool:
            run = await stratum.store.get_run(first)
            return bool(run and run["status"] in ("Planned", "Running"))

        await eventually(in_progress)
        waiting = [await stratum.emit("nap.start", {"ms": 200}) for _ in range(3)]
        other_tenant = await stratum.emit("nap.start", {"ms": 200}, tenant="beta")

        # beta has no such limit: it runs beside acme's long run
        assert (await stratum.finished(other_tenant))["status"] == "Succeeded"
        first_record = await stratum.store.get_run(first)
        assert first_record is not None and "finished_at" not in first_record

        async def all_queued() -> bool:
            records = [await stratum.store.get_run(run) for run in waiting]
            return all(r and r["status"] == "Accepted" and r.get("queued_at") for r in records)

        await eventually(all_queued)
        view = await stratum.store.get_view(waiting[0])
        assert view is not None and view["status"] == "Accepted"  # shown waiting, with why
        queued = [i for i in await stratum.store.history(waiting[0]) if "queued" in i["type"]]
        assert "1 of its 1 concurrent runs" in queued[0]["summary"]

        views = [await stratum.finished(run) for run in [first, *waiting]]
        assert [v["status"] for v in views] == ["Succeeded"] * 4  # nothing dropped
        records = [await stratum.store.get_run(run) or {} for run in [first, *waiting]]
        spans = sorted((r["started_at"], r["finished_at"], r["created_at"]) for r in records)
        for (_, ended, _), (started, _, _) in itertools.pairwise(spans):
            assert started >= ended, "two runs of the tenant overlapped"
        queued_in = [created for _, _, created in spans[1:]]
        assert queued_in == sorted(queued_in), "queued runs start in the order they came"
        for run in waiting:
            types = await history_types(stratum, run)
            assert types.index("stratum.run.queued") < types.index("stratum.run.admitted")
            assert types.index("stratum.run.admitted") < types.index("stratum.run.planned")
        assert "stratum.run.queued" not in await history_types(stratum, first)


async def test_events_over_the_rate_wait_or_are_refused_with_the_reason(
    tmp_path: Path, openbao: Vault
) -> None:
    rate, sent = 5, 45  # a burst of 5 passes, 32 may wait (6.4 s), the rest is refused
    async with limited(tmp_path, openbao, {"acme": {"events_per_second": rate}}) as s:
        runs = [await s.emit("nap.start", {"ms": 1}) for _ in range(sent)]

        async def settled() -> tuple[list[dict[str, Any]], list[Any]] | None:
            records = [r for r in [await s.store.get_run(run) for run in runs] if r]
            letters = [d for d in await s.store.dead_letters(100) if d.function == "ingest"]
            return (records, letters) if len(records) + len(letters) == sent else None

        records, letters = await eventually(settled, timeout=60)
        # every event is a run or a refusal on record: none was dropped
        assert letters, "the flood was larger than the waiting room"
        for letter in letters:
            assert not letter.invalid
            assert f"tenant acme is over its limit of {rate} events per second" in letter.error
        created = sorted(r["created_at"] for r in records)
        assert len(records) > rate + 1  # more than the burst: the others waited their turn
        span = _seconds(created[0], created[-1])
        assert span >= (len(records) - 2 * rate) / rate  # at the rate, not at once
        for run in runs:
            if await s.store.get_run(run):
                await s.finished(run)

        # refused, kept whole: re-driven once the tenant is under its rate, it runs
        async with httpx.AsyncClient(base_url=s.server.http_url) as client:
            response = await client.post(f"/api/dead-letters/{letters[0].id}/redrive")
            assert response.status_code == 200, response.text

        async def one_more_run() -> bool:
            return len([run for run in runs if await s.store.get_run(run)]) > len(records)

        await eventually(one_more_run, timeout=30)


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def test_a_tenant_cannot_see_another_tenants_runs(stratum: Harness) -> None:
    mine = await stratum.emit("no.such.topic", {}, tenant="acme")
    theirs = await stratum.emit("no.such.topic", {}, tenant="beta")
    await stratum.finished(mine)
    await stratum.finished(theirs)
    async with httpx.AsyncClient(base_url=stratum.server.http_url) as client:
        listed = (await client.get("/api/runs", params={"tenant": "beta"})).json()["runs"]
        assert [run["run_id"] for run in listed] == [theirs]

        hidden = await client.get(f"/api/runs/{mine}", params={"tenant": "beta"})
        nothing = await client.get("/api/runs/run-nonexistent", params={"tenant": "beta"})
        assert hidden.status_code == nothing.status_code == 404
        # another tenant's run answers exactly as a run that does not exist
        assert hidden.json()["error"] == f"unknown run {mine}"
        assert nothing.json()["error"] == "unknown run run-nonexistent"

        shown = await client.get(f"/api/runs/{mine}", params={"tenant": "acme"})
        assert shown.status_code == 200 and shown.json()["tenant"] == "acme"
        assert shown.json()["history"]

    assert await stratum.store.history(mine, "beta") == []  # filtered in the query itself
    assert await stratum.store.get_view(mine, "beta") is None

    # the CLI takes the tenant too
    env = dict(os.environ, STRATUM_DATA_DIR=str(stratum.server.settings.data_dir))
    show = [STRATUM, "show", mine, "--json", "--tenant"]
    hidden_cli, shown_cli = [
        await asyncio.to_thread(
            subprocess.run, [*show, tenant], cwd=ROOT, env=env, capture_output=True, text=True
        )
        for tenant in ("beta", "acme")
    ]
    assert hidden_cli.returncode == 5 and hidden_cli.stderr == f"error: unknown run {mine}\n"
    assert shown_cli.returncode == 0 and f'"run_id": "{mine}"' in shown_cli.stdout
