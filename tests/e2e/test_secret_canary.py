"""Secret canaries: a unique secret per run, handed to nodes that do everything wrong with
it, must appear nowhere Stratum writes or says anything.

The whole stack runs with the dev OpenBao `stratum up` starts (no vault_addr). The
workflow: `leak` echoes its secret (raw, base64, percent-encoded) to stdout and stderr and
fails its first attempt with the secret in its error; its retry succeeds. Then `blurt`
fails the same way (no retry) while its sibling `linger` waits, with the secret, until it
is cancelled; so the saga runs `leak`'s undo, which echoes the secret once more. Then every
place is searched for the canary in raw, base64 and URL-encoded forms: the JetStream
streams' stored messages, every DB table, the captured logs, every file under the test's
folder (bundles, the embedded DB's files, OpenBao's log), the HTTP API and the CLI —
whose run detail now shows what the nodes produced (leak's output is there, secret-free).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import hvac
import hvac.exceptions
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratum.telemetry.logs import JsonFormatter
from tests.conftest import ROOT, make_settings
from tests.e2e.conftest import Harness, running

STRATUM = str(Path(sys.executable).parent / "stratum")
SECRET_PATH = "stratum/canary"

WORKFLOW = """
let { schema, .. } = import "stratum.ncl" in
let canary = [{ path = "%(path)s", key = "value", env = "CANARY" }] in
{
  nodes = [
    { id = "leak", trigger = "canary.run", produces = ["leaked"], handler = "leak.nu",
      compensate = "undo.nu", secrets = canary, timeout = 10,
      retries = { max = 1, backoff = 0.1 } },
    { id = "blurt", trigger = "canary.run", consumes = ["leaked"], handler = "blurt.nu",
      secrets = canary, timeout = 10 },
    { id = "linger", trigger = "canary.run", consumes = ["leaked"], handler = "linger.nu",
      secrets = canary, timeout = 30 },
  ],
  capabilities = { leaked = schema.object { sha256 = schema.string } },
}
"""
ECHO = """
def echo [] {
    print -e $"raw ($env.CANARY)"
    print -e $"base64 ($env.CANARY | encode base64)"
    print -e $"url ($env.CANARY | url encode --all) ($env.CANARY | url encode)"
}
"""
SCRIPTS = {
    "leak.nu": ECHO
    + """
def main [] {
    $in | ignore
    echo
    if $env.STRATUM_ATTEMPT == "1" {
        print $"stdout ($env.CANARY) ($env.CANARY | encode base64)"
        print -e $"the registry refused ($env.CANARY)"
        exit 1
    }
    {leaked: {sha256: ($env.CANARY | hash sha256)}} | to json -r
}
""",
    "blurt.nu": ECHO
    + """
def main [] {
    $in | ignore
    echo
    sleep 300ms
    error make {msg: $"cannot publish with ($env.CANARY)"}
}
""",
    "linger.nu": ECHO
    + """
def main [] {
    $in | ignore
    echo
    ^sleep 20
}
""",
    "undo.nu": ECHO
    + """
def main [] {
    $in | ignore
    echo
    print $"undone with ($env.CANARY)"
}
""",
}


def forms(canary: str) -> dict[str, bytes]:
    raw = canary.encode()
    found = {
        "raw": raw,
        "base64": base64.b64encode(raw),
        "base64-unpadded": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "url": quote(canary, safe="").encode(),
        "url-path": quote(canary).encode(),
        "url-plus": quote_plus(canary).encode(),
        "url-all": "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in canary).encode(),
    }
    return found | {f"{name}-lower": value.lower() for name, value in found.items()}


def hits(place: str, data: bytes, canary: str) -> list[str]:
    return [f"{place}: {name}" for name, form in forms(canary).items() if form in data]


async def stream_contents(harness: Harness) -> dict[str, bytes]:
    """Every message stored in this test's streams, headers and body."""
    js = harness.nc.jetstream()
    stored: dict[str, bytes] = {}
    subjects = harness.subjects
    for stream in (subjects.events_stream, subjects.runs_stream, subjects.dead_stream):
        state = (await js.stream_info(stream)).state
        if not state.messages:
            continue
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            headers = orjson.dumps(msg.headers or {})
            stored[f"{stream}#{seq} {msg.subject}"] = headers + b"\n" + (msg.data or b"")
    return stored


async def database_export(harness: Harness) -> dict[str, bytes]:
    """Every row of every table."""
    db = harness.store.db
    info = (await db.query("INFO FOR DB;"))[0]
    tables = sorted(info["tables"])
    assert {"run", "node_exec", "event", "compensation", "capability"} <= set(tables)
    rows = {}
    for table in tables:
        result = await db.query("SELECT * FROM type::table($t);", {"t": table})
        rows[table] = orjson.dumps(result, default=str)
    return rows


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


async def cli(data_dir: Path, *args: str) -> bytes:
    """The CLI's output; it asks this process's server, so the loop must keep serving."""
    process = await asyncio.create_subprocess_exec(
        STRATUM,
        *args,
        cwd=ROOT,
        env=dict(os.environ, STRATUM_DATA_DIR=str(data_dir)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr
    return stdout + stderr


async def test_a_canary_secret_appears_nowhere(
    tmp_path: Path,
    nats_url: str,
    caplog: pytest.LogCaptureFixture,
    spans: InMemorySpanExporter,
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"canary-{uuid.uuid4().hex}/+= &?"
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "canary.ncl").write_text(WORKFLOW % {"path": SECRET_PATH})
    for name, text in SCRIPTS.items():
        (definitions / name).write_text(text)
    settings = make_settings(tmp_path, nats_url, definitions=str(definitions))
    assert settings.vault_addr == ""  # Stratum starts (and seeds) a dev OpenBao of its own

    async with running(settings) as harness:
        store = harness.server.secrets
        assert store is not None and store.server is not None
        await store.broker.write("secret", SECRET_PATH, {"value": canary})
        run = await harness.emit("canary.run", {})
        view = await harness.finished(run)
        assert view["status"] == "Compensated", view

        executions = await harness.store.node_executions(run)
        # the scripts did get the secret: leak reports its hash
        capabilities = (await database_export(harness))["capability"]
        assert hashlib.sha256(canary.encode()).hexdigest().encode() in capabilities
        assert [a["status"] for a in executions["leak"]["attempts"]] == ["failed", "succeeded"]
        assert executions["blurt"]["status"] == "failed"
        assert executions["linger"]["status"] == "cancelled"
        first_error = executions["leak"]["attempts"][0]["error"]
        # every attempt's credential is recorded by lease id and is revoked now
        leases = [a["credential_lease"] for e in executions.values() for a in e["attempts"]]
        (step,) = (await harness.store.compensations(run)).values()
        leases += [use["credential_lease"] for use in step["credential_leases"]]
        assert len(leases) == len(set(leases)) == 5 and all(leases)
        root = hvac.Client(url=store.addr, token=store.server.token)
        for lease in leases:
            with pytest.raises(hvac.exceptions.VaultError):
                root.auth.token.lookup_accessor(lease)

        places: dict[str, bytes] = {}
        places |= {f"jetstream {k}": v for k, v in (await stream_contents(harness)).items()}
        places |= {f"db {k}": v for k, v in (await database_export(harness)).items()}
        async with httpx.AsyncClient(base_url=harness.server.http_url) as http:
            for path in (
                "/api/runs",
                f"/api/runs/{run}",
                "/api/graph",
                "/api/dead-letters",
                "/api/audit",
                "/healthz",
                "/metrics",
            ):
                response = await http.get(path)
                assert response.status_code == 200, (path, response.text)
                places[f"api {path}"] = response.content
        places["cli show"] = await cli(settings.data_dir, "show", run, "--json")
        places["cli show (tree)"] = await cli(settings.data_dir, "show", run)
        places["cli runs"] = await cli(settings.data_dir, "runs", "--tenant", "acme", "--json")

    places |= {f"file {k}": v for k, v in files_under(tmp_path).items()}
    formatter = JsonFormatter()
    places["logs"] = "\n".join(formatter.format(r) for r in caplog.records).encode()
    # every span as exported: names, attributes, events (exception texts), status
    recorded = spans.get_finished_spans()
    places["spans"] = "\n".join(span.to_json() for span in recorded).encode()

    leaks: list[str] = []
    for place, data in places.items():
        leaks += hits(place, data, canary)
    assert leaks == []

    # the outputs the run detail shows were searched too: leak's is there, in the API,
    # `show --json` and `show`
    outputs = orjson.loads(places[f"api /api/runs/{run}"])["outputs"]
    digest = hashlib.sha256(canary.encode()).hexdigest()
    assert outputs == {"leak": {"leaked": {"value": {"sha256": digest}}}}
    assert orjson.loads(places["cli show"])["outputs"] == outputs
    assert f'sha256: "{digest}"'.encode() in places["cli show (tree)"]

    # the search itself works, and what the scripts echoed was there to find: masked now
    assert hits("probe", b"x" + base64.b64encode(canary.encode()) + b"x", canary)
    assert first_error == "node leak: exit code 1: the registry refused ***"
    bundles = [v for k, v in places.items() if k.startswith("file") and "/runs/" in k]
    assert sum(b.count(b"***") for b in bundles) >= 20
    assert any(k.endswith("openbao.log") for k in places)
    assert len(places) > 50
    # the spans searched include the attempts that failed with the secret in their error
    failed = [s for s in recorded if s.name == "execute leak" and not s.status.is_ok]
    assert failed and "***" in (failed[0].status.description or "")
