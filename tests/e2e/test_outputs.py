"""What nodes produced, seen without opening a bundle: the real crate pipeline's built
artifact, and a workflow whose outputs are big, credential-like or hold a secret, through
`/api/runs/{id}`, `stratum show --json` and `stratum show`, on a real Stratum (NATS,
embedded SurrealDB, nu, OpenBao)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from stratum_host.api.outputs import OUTPUT_LIMIT
from stratum_host.cli.render import FIELD_LIMIT
from tests.conftest import Vault, make_settings
from tests.e2e.conftest import Harness, running
from tests.e2e.test_cli_observe import SAMPLE, cli, in_order, ok

SECRET_PATH = "stratum/outputs-canary"
WORKFLOW = """let { schema, .. } = import "stratum.ncl" in
{
  nodes = [
    { id = "big", trigger = "out.go", produces = ["blob"], handler = "big.nu" },
    { id = "creds", trigger = "out.go", produces = ["deploy"], handler = "creds.nu" },
    { id = "leaky", trigger = "out.go", consumes = ["blob", "deploy"], produces = ["report"],
      handler = "leaky.nu", timeout = 10,
      secrets = [{ path = "%(path)s", key = "value", env = "CANARY" }] },
  ],
  capabilities = {
    blob = schema.object { lines = schema.array schema.string },
    deploy = schema.any,
    report = schema.any,
  },
}
"""
SCRIPTS = {
    # ~200 KiB of JSON: far over what the run detail shows of one value
    "big.nu": """
def main [] {
    let pad = ("" | fill -c "x" -w 90)
    {blob: {lines: (seq 1 2000 | each {|i| $"line ($i): ($pad)"})}} | to json -r
}
""",
    # fields whose names say they hold a credential, at any depth
    "creds.nu": """
def main [] {
    $in | ignore
    {deploy: {url: "https://deploy.example/acme", api_token: "%(token)s",
              users: [{name: "ci", password: "%(password)s"}]}} | to json -r
}
""",
    # prints the secret it was given inside its output: refused by the executor
    "leaky.nu": """
def main [] {
    $in | ignore
    {report: {note: $"deployed with ($env.CANARY)"}} | to json -r
}
""",
}


def flat(text: str) -> str:
    """`show`'s text with the tree's lines and the wrapping taken out."""
    return " ".join(text.replace("│", " ").split())


async def detail(harness: Harness, run: str) -> dict[str, Any]:
    """`/api/runs/{id}` over real HTTP, as the CLI reads it."""
    async with httpx.AsyncClient(base_url=harness.server.http_url, timeout=10) as client:
        response = await client.get(f"/api/runs/{run}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_show_and_the_api_give_the_crates_built_artifact(stratum: Harness) -> None:
    run = await stratum.emit("crate.push", {"source": SAMPLE})
    view = await stratum.finished(run)
    assert view["status"] == "Succeeded", view.get("error")
    artifact = stratum.server.settings.data_dir / "runs" / run / "workspace" / "artifacts"
    [tarball] = artifact.glob("*.tar.gz")
    sha256 = hashlib.sha256(tarball.read_bytes()).hexdigest()

    outputs = (await detail(stratum, run))["outputs"]
    assert set(outputs) == {"fmt-crate", "lint-crate", "build-crate"}
    built = outputs["build-crate"]["built-artifact"]["value"]
    assert (built["sha256"], built["path"], built["bytes"]) == (
        sha256,
        str(tarball),
        tarball.stat().st_size,
    )
    assert set(outputs["lint-crate"]) == {"linted-code"}
    assert set(outputs["fmt-crate"]) == {"formatted-code"}

    shown = json.loads(ok(await cli(stratum, "show", run, "--json")))
    assert shown["outputs"] == outputs
    text = ok(await cli(stratum, "show", run))
    # a line per field: the digest is there whatever the length of the entries list
    in_order(text, "stage 1", "build-crate", "outputs", "build-crate", "built-artifact")
    in_order(text, "built-artifact", f'sha256: "{sha256}"')


async def test_outputs_shown_are_cut_masked_and_never_hold_a_secret(
    tmp_path: Path, nats_url: str, openbao: Vault
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    marks = {"token": f"tok-{uuid.uuid4().hex}", "password": f"pw-{uuid.uuid4().hex}"}
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "out.ncl").write_text(WORKFLOW % {"path": SECRET_PATH})
    for name, text in SCRIPTS.items():
        (definitions / name).write_text(text % marks if name == "creds.nu" else text)
    await openbao.broker.write("secret", SECRET_PATH, {"value": canary})
    vault = {"vault_addr": openbao.addr, "vault_token": openbao.token}
    settings = make_settings(tmp_path, nats_url, definitions=str(definitions), **vault)
    async with running(settings) as harness:
        run = await harness.emit("out.go", {})
        view = await harness.finished(run)
        body = await detail(harness, run)
        as_json = ok(await cli(harness, "show", run, "--json"))
        text = ok(await cli(harness, "show", run))
        stored = await harness.store.capabilities(run)

    assert view["nodes"]["leaky"]["status"] == "failed"
    assert view["nodes"]["leaky"]["error"].startswith("node leaky: its outputs contain a secret")
    outputs = body["outputs"]
    assert set(outputs) == {"big", "creds"}  # leaky's output was refused, never stored
    assert json.loads(as_json)["outputs"] == outputs

    # the big value: its first OUTPUT_LIMIT bytes, how much was cut, and where it is whole
    cut = outputs["big"]["blob"]
    whole = orjson.dumps(stored["blob"])
    assert "value" not in cut
    assert (cut["bytes"], cut["cut"]) == (len(whole), len(whole) - OUTPUT_LIMIT)
    assert cut["preview"] == whole[:OUTPUT_LIMIT].decode()
    bundle = view["nodes"]["big"]["bundle"]
    assert cut["whole"] == f"{bundle}/stdout.log"
    assert orjson.loads(Path(cut["whole"]).read_bytes())["blob"] == stored["blob"]
    # `show` prints a few lines of it, how much that is, and where the whole value is
    shown = cut["preview"][:FIELD_LIMIT]
    note = f"(first {len(shown)} of {cut['bytes']} bytes; whole value in {cut['whole']})"
    in_order(flat(text), "outputs", "big", f"blob: {shown}… {note}")
    assert len(text) < len(whole)

    # credential-like fields are masked as in the logs, the rest shown
    assert outputs["creds"]["deploy"]["value"] == {
        "url": "https://deploy.example/acme",
        "api_token": "[redacted]",
        "users": [{"name": "ci", "password": "[redacted]"}],
    }
    in_order(flat(text), "creds", "deploy", 'api_token: "[redacted]"', 'url: "https://deploy')
    in_order(flat(text), 'users: [{"name": "ci", "password": "[redacted]"}]')

    # neither the secret nor the credential-like values show anywhere
    for place, shown in {"api": orjson.dumps(body), "json": as_json, "text": text}.items():
        for value in (canary, *marks.values()):
            assert value not in str(shown), (place, value)
