"""End to end through all five functions: a real nats-server, embedded SurrealDB, real
Nickel definitions (the shipped examples) and real `nu` scripts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import ROOT, eventually
from tests.e2e.conftest import Harness

SAMPLE = "nickel/examples/sample-crate"


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (empty if `path` does not exist)."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


async def test_crate_pipeline_succeeds_in_planned_stages_with_a_real_artifact(
    stratum: Harness,
) -> None:
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    view = await stratum.finished(run)

    assert view["status"] == "Succeeded", view.get("error")
    assert [stage["nodes"] for stage in view["stages"]] == [
        ["fmt-crate", "lint-crate"],
        ["build-crate"],
    ]
    assert all(node["status"] == "succeeded" for node in view["nodes"].values())
    record = await stratum.store.get_run(run)
    assert record is not None and record["status"] == "Succeeded"
    assert record["graph_version"] == stratum.server.graphs.current.version  # type: ignore[union-attr]
    assert len(record["inputs_hash"]) == 64 and len(record["outputs_hash"]) == 64

    artifact = (await stratum.store.capabilities(run))["built-artifact"]
    path = Path(artifact["path"])
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact["sha256"]
    # the bundle of every node points at a manifest with env names, never values
    for node in view["nodes"].values():
        manifest = orjson.loads((Path(node["bundle"]) / "manifest.json").read_bytes())
        assert "STRATUM_RUN_ID" in manifest["env"]
        assert run not in orjson.dumps(manifest["env"]).decode()


async def test_failed_release_is_compensated_in_reverse_order_and_undone_on_disk(
    stratum: Harness, tmp_path: Path
) -> None:
    target = tmp_path / "release-target"
    before = tree(target)
    run = await stratum.emit(
        "release.request", {"version": "9.9.9", "target": str(target), "fail_at": "publish"}
    )
    view = await stratum.finished(run)

    assert view["status"] == "Compensated"
    assert view["nodes"]["publish-release"]["status"] == "failed"
    steps = [(step["stage"], step["node"]) for step in view["compensation"]]
    done = [(stage, node) for stage, node in steps]
    assert done == sorted(done, reverse=True), "compensation must run latest stage first"
    assert {node for _, node in steps} == {"prepare-release", "tag-release", "upload-assets"}
    assert all(step["status"] == "succeeded" for step in view["compensation"])
    assert tree(target) == before, "every effect of the run must be undone"


async def test_successful_release_leaves_its_effects(stratum: Harness, tmp_path: Path) -> None:
    target = tmp_path / "release-target"
    run = await stratum.emit("release.request", {"version": "1.0.0", "target": str(target)})
    view = await stratum.finished(run)
    assert view["status"] == "Succeeded", view.get("error")
    assert (target / "index.json").is_file()
    assert view["compensation"] == []
    # upload-assets ran with the registry token seeded into OpenBao, under a credential
    # of its own whose lease (not the token) is in its record
    token = orjson.loads((ROOT / "deploy" / "dev-secrets.json").read_bytes())["secrets"][0]
    fingerprint = hashlib.sha256(token["data"]["token"].encode()).hexdigest()[:12]
    [receipt] = target.glob("registry/*/1.0.0/receipt.json")
    assert orjson.loads(receipt.read_bytes())["auth"] == f"token sha256:{fingerprint}"
    upload = (await stratum.store.node_executions(run))["upload-assets"]
    assert [bool(a["credential_lease"]) for a in upload["attempts"]] == [True]
    prepare = (await stratum.store.node_executions(run))["prepare-release"]
    assert [a.get("credential_lease") for a in prepare["attempts"]] == [None]  # no secrets


async def test_duplicate_event_makes_one_run(stratum: Harness) -> None:
    first = await stratum.emit("crate.push", {"source": SAMPLE}, event_id="same-id")
    second = await stratum.emit("crate.push", {"source": SAMPLE}, event_id="same-id")
    assert first == second
    await stratum.finished(first)
    rows = (await stratum.store.db.query("SELECT count() AS n FROM run GROUP ALL;"))[0]
    assert rows[0]["n"] == 1


async def test_unknown_topic_fails_the_run_with_a_clear_reason(stratum: Harness) -> None:
    run = await stratum.emit("nothing.here", {})
    view = await stratum.finished(run)
    assert view["status"] == "Failed"
    assert "no node is triggered by topic 'nothing.here'" in view["error"]


async def test_invalid_events_are_recorded_and_valid_traffic_keeps_flowing(
    stratum: Harness,
) -> None:
    js = stratum.nc.jetstream()
    await js.publish(stratum.subjects.event("acme", "crate.push"), b"this is not json")
    await js.publish(
        stratum.subjects.event("acme", "crate.push"), orjson.dumps({"specversion": "1.0"})
    )
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    assert (await stratum.finished(run))["status"] == "Succeeded"

    async def two_rejections() -> list[dict[str, Any]] | None:
        rows = await stratum.store.rejections()
        return rows if len(rows) >= 2 else None

    reasons = sorted(row["reason"] for row in await eventually(two_rejections))
    assert any("not JSON" in reason for reason in reasons)
    assert any("CloudEvent" in reason for reason in reasons)


async def test_every_event_is_in_the_database_before_it_is_on_the_bus(stratum: Harness) -> None:
    """Subscribe to every internal subject; the moment an event arrives, the state change
    it announces must already be readable from SurrealDB."""
    violations: list[str] = []
    seen: list[str] = []

    node_order: list[tuple[str, str]] = []

    async def check(msg: Any) -> None:
        event = orjson.loads(msg.data)
        seen.append(event["type"])
        if event["type"].startswith("stratum.node."):
            node_order.append((event["data"]["node"], event["type"]))
        rows = (
            await stratum.store.db.query(
                "SELECT id FROM type::thing('event', $id);", {"id": event["id"]}
            )
        )[0]
        if not rows:
            violations.append(f"{event['type']} {event['id']} not in the event log")
        run = await stratum.store.get_run(event["runid"])
        kind, data = event["type"], event["data"]
        if run is None:
            violations.append(f"{kind}: run missing")
            return
        if kind == "stratum.run.planned" and run.get("graph_version") != data["graph_version"]:
            violations.append("plan not stored")
        if kind == "stratum.node.succeeded":
            execs = await stratum.store.node_executions(event["runid"])
            if execs[data["node"]]["status"] != "succeeded":
                violations.append(f"node {data['node']} not recorded as succeeded")
        if kind == "stratum.run.succeeded" and run["status"] != "Succeeded":
            violations.append("run not recorded as Succeeded")
        if kind == "stratum.run.compensated" and run["status"] != "Compensated":
            violations.append("run not recorded as Compensated")

    subscriptions = [
        await stratum.nc.subscribe(subject, cb=check)
        for subject in stratum.subjects.internal_wildcards
    ]
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    await stratum.finished(run)
    for subscription in subscriptions:
        await subscription.unsubscribe()
    assert "stratum.run.succeeded" in seen and "stratum.node.succeeded" in seen
    assert violations == []
    # a node's start is announced while its script starts, yet always before its end
    ended = [node for node, kind in node_order if kind == "stratum.node.succeeded"]
    assert ended
    for node in ended:
        kinds = [kind for name, kind in node_order if name == node]
        assert kinds.index("stratum.node.started") < kinds.index("stratum.node.succeeded")


async def test_replay_rebuilds_the_same_read_models(stratum: Harness, tmp_path: Path) -> None:
    runs = [
        await stratum.emit("crate.push", {"source": SAMPLE}),
        await stratum.emit(
            "release.request",
            {"version": "2.0.0", "target": str(tmp_path / "t"), "fail_at": "publish"},
        ),
    ]
    for run in runs:
        await stratum.finished(run)
    live = await stratum.store.all_views()
    assert len(live) == 2
    assert await stratum.server.projections.rebuild() == 2
    rebuilt = await stratum.store.all_views()
    for before, after in zip(live, rebuilt, strict=True):
        assert {k: v for k, v in after.items() if before.get(k) != v} == {}, before["run_id"]
    assert rebuilt == live
