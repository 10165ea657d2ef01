"""Dead letters: a message a function cannot handle is recorded, announced, listed (API and
CLI) and re-drivable, and the function keeps serving valid traffic meanwhile."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from nats.js.api import StorageType, StreamConfig

from stratum.errors import RetryableError
from stratum.events import Envelope, RunSucceeded
from stratum.runtime import Function, Inbound, JetStreamRunner, Publisher
from stratum_host.api.http import create_app
from tests.conftest import eventually
from tests.e2e.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]
STRATUM = str(Path(sys.executable).parent / "stratum")
SAMPLE = "nickel/examples/sample-crate"
GARBAGE = b"\xff\xfe not an event"


async def listed(stratum: Harness) -> list[dict[str, Any]]:
    """GET /api/dead-letters on the running server, as the CLI does."""
    async with httpx.AsyncClient(base_url=stratum.server.http_url) as client:
        response = await client.get("/api/dead-letters")
    assert response.status_code == 200, response.text
    letters: list[dict[str, Any]] = response.json()["dead_letters"]
    return letters


async def cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    """`stratum ARGS` as a process; async, so the server in this loop keeps answering."""
    process = await asyncio.create_subprocess_exec(
        STRATUM,
        *args,
        cwd=ROOT,
        env={**os.environ, "STRATUM_DATA_DIR": str(data_dir), "STRATUM_WATCH": "false"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_invalid_messages_are_dead_lettered_and_traffic_keeps_flowing(
    stratum: Harness, tmp_path: Path
) -> None:
    js = stratum.nc.jetstream()
    # the planner and the projector both consume run.succeeded: each gives up on it
    ack = await js.publish(
        stratum.subjects.internal(RunSucceeded.TYPE),
        GARBAGE,
        headers={
            "Nats-Msg-Id": "garbage-1",
            "Stratum-Run-Id": "run-nope",
            "Authorization": "Bearer hunter2",
        },
    )
    await js.publish(stratum.subjects.event("acme", "crate.push"), b"this is not json")
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    assert (await stratum.finished(run))["status"] == "Succeeded"

    async def three() -> list[dict[str, Any]] | None:
        letters = await listed(stratum)
        return letters if len(letters) >= 3 else None

    letters = {letter["function"]: letter for letter in await eventually(three)}
    assert sorted(letters) == ["ingest", "planner", "projector"]
    planner = letters["planner"]
    assert planner["subject"] == stratum.subjects.internal(RunSucceeded.TYPE)
    assert (planner["stream"], planner["stream_sequence"]) == (ack.stream, ack.seq)
    assert planner["invalid"] is True and planner["deliveries"] == 1
    assert "InvalidEventError" in planner["error"]
    assert planner["headers"]["Nats-Msg-Id"] == "garbage-1"
    assert "Authorization" not in planner["headers"] and planner["redacted"] == ["Authorization"]
    assert "hunter2" not in json.dumps(planner)
    assert (planner["body_encoding"], planner["body_bytes"]) == ("base64", len(GARBAGE))
    assert letters["projector"]["id"] != planner["id"]  # one record per function that gave up
    # invalid publisher events are still recorded as rejections, and are dead letters too
    assert "not JSON" in letters["ingest"]["error"]
    assert len(await stratum.store.rejections()) == 1

    async with httpx.AsyncClient(base_url=stratum.server.http_url) as client:
        whole = (await client.get(f"/api/dead-letters/{planner['id']}")).json()
        missing = await client.get("/api/dead-letters/dl-nope")
    assert base64.b64decode(whole["body"]) == GARBAGE
    assert missing.status_code == 404 and missing.json() == {"error": "unknown dead letter dl-nope"}

    # announced on the dead-letter subject, in a stream of its own
    subjects = stratum.subjects
    announced = await js.get_last_msg(subjects.dead_stream, subjects.dead("planner"))
    assert announced.data == GARBAGE
    assert announced.headers is not None
    assert announced.headers["Stratum-Dead-Letter-Id"] == planner["id"]
    assert "Authorization" not in announced.headers

    data_dir = stratum.server.settings.data_dir
    code, out, err = await cli(data_dir, "dead-letters", "--json")
    assert code == 0, err
    assert {letter["id"] for letter in json.loads(out)} == {x["id"] for x in letters.values()}
    code, out, err = await cli(data_dir, "dead-letters")
    assert code == 0, err
    assert "Dead letters" in out and planner["id"] in out
    code, out, err = await cli(data_dir, "redrive", "dl-nope")
    assert (code, err) == (5, "error: unknown dead letter dl-nope\n")  # 404: not found
    code, out, err = await cli(tmp_path / "nowhere", "dead-letters")
    assert code == 1 and err.startswith("error: Stratum is not running")


async def test_a_failing_message_is_dead_lettered_after_max_deliver_and_redriven(
    stratum: Harness,
) -> None:
    """A real runner on a stream of the test's own, with a handler that fails until told
    otherwise: exactly `max_deliver` deliveries, then a dead letter; re-driven once the
    handler is fixed, it arrives again under a new message id and is handled."""
    subjects, js = stratum.subjects, stratum.nc.jetstream()
    stream, subject = f"{subjects.runs_stream}_FLAKY", f"{subjects.prefix}.flaky.work"
    await js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[subject],
            storage=StorageType.MEMORY,
            duplicate_window=120.0,
        )
    )
    seen: list[Inbound] = []
    fixed = asyncio.Event()

    class Flaky:
        """Fails until the downstream is fixed."""

        def parse(self, inbound: Inbound) -> Inbound:
            seen.append(inbound)
            return inbound

        async def load(self, event: Inbound) -> None:
            if not fixed.is_set():
                raise RetryableError("the downstream is down")

        def decide(self, event: Inbound, state: None, now: datetime) -> None:
            return None

        async def commit(self, decision: None) -> list[Envelope]:
            return []

    function = Function(
        name="flaky",
        stream=stream,
        subjects=(subject,),
        handler=Flaky(),
        concurrency=1,
        ack_wait=5.0,
        max_deliver=3,
    )
    runner = JetStreamRunner(
        function, js, Publisher(js, subjects), stratum.store, durable_prefix=subjects.prefix
    )
    await runner.start()
    try:
        await js.publish(subject, b'{"n": 1}', headers={"Nats-Msg-Id": "poison-1"})

        async def flaky_letter() -> dict[str, Any] | None:
            return next((x for x in await listed(stratum) if x["function"] == "flaky"), None)

        letter = await eventually(flaky_letter, timeout=20)
        assert [inbound.delivery for inbound in seen] == [1, 2, 3]
        assert letter["deliveries"] == 3 and letter["invalid"] is False
        assert letter["error"] == "RetryableError: the downstream is down"
        assert letter["body_encoding"] == "utf-8" and letter["redriven"] == 0
        await asyncio.sleep(1.5)  # terminated: JetStream does not deliver it again
        assert len(seen) == 3
        info = await js.consumer_info(stream, runner.durable)
        assert info.num_ack_pending == 0 and info.num_pending == 0

        app = create_app(
            stratum.store, stratum.server.graphs, stratum.server.projections, jetstream=js
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            missing = await client.post("/api/dead-letters/dl-nope/redrive")
            assert missing.status_code == 404
            assert missing.json() == {"error": "unknown dead letter dl-nope"}
            fixed.set()
            response = await client.post(f"/api/dead-letters/{letter['id']}/redrive")
        assert response.status_code == 200, response.text
        assert response.json()["redriven"] == 1 and response.json()["redriven_at"]

        async def arrived_again() -> list[Inbound]:
            return seen[3:]

        again = await eventually(arrived_again)
        assert again[0].subject == subject and again[0].body == b'{"n": 1}'
        assert again[0].headers["Nats-Msg-Id"] == f"{letter['id']}.redrive.1"
        assert again[0].headers["Stratum-Original-Msg-Id"] == "poison-1"

        async def settled() -> bool:
            info = await js.consumer_info(stream, runner.durable)
            return bool(info.num_ack_pending == 0 and info.num_pending == 0)

        await eventually(settled)
        stored = await stratum.store.get_dead_letter(letter["id"])
        assert stored is not None and stored.redriven == 1
        # the same give-up recorded again (a crash between record and term) changes nothing
        await stratum.store.record_dead_letter(stored.model_copy(update={"redriven": 0}))
        assert (await stratum.store.get_dead_letter(letter["id"])) == stored
        assert [x["function"] for x in await listed(stratum)].count("flaky") == 1
        assert len(seen) == 4
    finally:
        await runner.stop()
        await js.delete_stream(stream)
