"""The audit trail against the real stack: the example pipelines run, the trail is
exported through the API (`GET /api/audit`) and the CLI, it verifies, and a file tampered
with fails verification naming the line."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from stratum.trust.audit_chain import verify_bytes
from tests.e2e.conftest import Harness, cli

pytestmark = pytest.mark.asyncio(loop_scope="session")
SAMPLE = "nickel/examples/sample-crate"


async def run_examples(stratum: Harness, tmp_path: Path) -> dict[str, str]:
    runs = {
        "crate": await stratum.emit("crate.push", {"source": SAMPLE}),
        "release": await stratum.emit(
            "release.request",
            {"version": "9.9.9", "target": str(tmp_path / "target"), "fail_at": "publish"},
        ),
        "unknown": await stratum.emit("no.such.topic", {}),
        "beta": await stratum.emit("no.such.topic", {}, tenant="beta"),
    }
    for run in runs.values():
        await stratum.finished(run)
    return runs


async def test_the_exported_trail_verifies_and_tampering_fails_naming_the_line(
    stratum: Harness, tmp_path: Path
) -> None:
    runs = await run_examples(stratum, tmp_path)
    async with httpx.AsyncClient(base_url=stratum.server.http_url) as client:
        exported = (await client.get("/api/audit")).content
        only_beta = (await client.get("/api/audit", params={"tenant": "beta"})).content
        bad_since = await client.get("/api/audit", params={"since": "yesterday"})

    report = verify_bytes(exported)
    assert report.ok and report.lines == len(runs)
    records = [orjson.loads(line)["record"] for line in exported.splitlines()]
    keys = [(r["timestamp"], r["run_id"]) for r in records]
    assert keys == sorted(keys)  # ordered by (timestamp, run id)
    by_run = {r["run_id"]: r for r in records}
    crate = by_run[runs["crate"]]
    assert crate["status"] == "Succeeded" and crate["tenant"] == "acme"
    assert crate["actor"] == "source:tests"
    graph = stratum.server.graphs.current
    assert graph is not None and crate["graph_version"] == graph.version
    assert len(crate["inputs_hash"]) == 64 and len(crate["outputs_hash"]) == 64
    assert by_run[runs["release"]]["status"] == "Compensated"
    assert by_run[runs["unknown"]]["reason"]  # why it could not be planned
    assert "event_data" not in crate  # hashes stand for the data

    paged = [record.model_dump(mode="json") async for record in stratum.store.audit_records(page=1)]
    assert paged == records  # paged by key: the same records, none twice

    beta = [orjson.loads(line)["record"] for line in only_beta.splitlines()]
    assert [r["run_id"] for r in beta] == [runs["beta"]]  # filtered in the query
    assert verify_bytes(only_beta).ok  # a filtered export is a chain of its own
    assert bad_since.status_code == 400

    # the CLI writes the same bytes, checks them, and verifies the file offline
    path = tmp_path / "audit.ndjson"
    done = await cli(stratum, "audit", "export", "--ndjson", "--out", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_bytes() == exported
    assert f"head {report.head}" in done.stderr
    ok = await cli(stratum, "audit", "verify", str(path), "--head", report.head)
    assert ok.returncode == 0, ok.stderr
    assert f"{len(runs)} record(s)" in ok.stdout

    lines = exported.splitlines(keepends=True)
    changed = tmp_path / "changed.ndjson"
    changed.write_bytes(
        b"".join([*lines[:1], lines[1].replace(b'"status":"', b'"status":"Not'), *lines[2:]])
    )
    failed = await cli(stratum, "audit", "verify", str(changed))
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: {changed}: line 2: ")
    assert len(failed.stderr.strip().splitlines()) == 1  # one clear line

    removed = tmp_path / "removed.ndjson"
    removed.write_bytes(b"".join([*lines[:2], *lines[3:]]))
    failed = await cli(stratum, "audit", "verify", str(removed))
    assert failed.returncode == 1 and "line 3: sequence number" in failed.stderr

    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(b"".join(lines[:-1]))
    assert (await cli(stratum, "audit", "verify", str(cut))).returncode == 0
    failed = await cli(stratum, "audit", "verify", str(cut), "--head", report.head)
    assert failed.returncode == 1 and "cut off its end" in failed.stderr


async def test_export_asks_for_its_format(stratum: Harness) -> None:
    done = await cli(stratum, "audit", "export")
    assert done.returncode == 1 and "--ndjson" in done.stderr
