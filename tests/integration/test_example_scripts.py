"""The example workflows under nickel/workflows/, run for real.

Each .ncl file is evaluated by Nickel with the Workflow contract; each Nushell script is run
by the real `nu` exactly as Stratum runs it (`nu --no-config-file --stdin script`, JSON on
stdin, a minimal environment, cwd = the repository root). Stages are chained by hand, and
every handler's stdout is validated against its capability's JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import nickel
from tests.integration.conftest import NU

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "nickel" / "lib"
WORKFLOWS = ROOT / "nickel" / "workflows"
CRATE_NCL = WORKFLOWS / "crate" / "crate.ncl"
RELEASE_NCL = WORKFLOWS / "release" / "release.ncl"
SAMPLE_CRATE = ROOT / "nickel" / "examples" / "sample-crate"


# --------------------------------------------------------------------------- helpers


@dataclass
class Workflow:
    path: Path
    nodes: dict[str, dict[str, Any]]
    capabilities: dict[str, dict[str, Any]]

    def script(self, node_id: str, kind: str = "handler") -> Path:
        return self.path.parent / self.nodes[node_id][kind]

    def stages(self, topic: str) -> list[list[str]]:
        """Triggered nodes plus the producers of what they consume, in dependency stages
        (lexical order inside a stage), the way Stratum's planner is described."""
        producers = {cap: n["id"] for n in self.nodes.values() for cap in n["produces"]}
        wanted = {n["id"] for n in self.nodes.values() if n.get("trigger") == topic}
        todo = list(wanted)
        while todo:
            for cap in self.nodes[todo.pop()]["consumes"]:
                if producers[cap] not in wanted:
                    wanted.add(producers[cap])
                    todo.append(producers[cap])
        stages: list[list[str]] = []
        done: set[str] = set()
        while len(done) < len(wanted):
            ready = sorted(
                nid
                for nid in wanted - done
                if all(producers[c] in done for c in self.nodes[nid]["consumes"])
            )
            assert ready, f"cycle among {wanted - done}"
            stages.append(ready)
            done.update(ready)
        return stages


def load_workflow(path: Path) -> Workflow:
    expr = f'(import "{path}") | (import "stratum.ncl").Workflow'
    data = json.loads(nickel.run(expr, import_paths=[str(LIB)]))
    return Workflow(
        path=path,
        nodes={n["id"]: n for n in data["nodes"]},
        capabilities=data["capabilities"],
    )


def run_nu(
    script: Path,
    payload: dict[str, Any],
    *,
    workspace: Path,
    node: str = "test",
    run_id: str = "run-1",
    attempt: int = 1,
    stage: int = 0,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    assert NU.exists(), f"no nu binary at {NU}: run `make install`"
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(workspace.parent),
        "STRATUM_RUN_ID": run_id,
        "STRATUM_TENANT": "acme",
        "STRATUM_NODE": node,
        "STRATUM_STAGE": str(stage),
        "STRATUM_ATTEMPT": str(attempt),
        "STRATUM_WORKSPACE": str(workspace),
        "STRATUM_BUNDLE": str(script.parent),
    }
    return subprocess.run(
        [str(NU), "--no-config-file", "--stdin", str(script)],
        input=json.dumps(payload),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def validate(wf: Workflow, capability: str, value: Any) -> None:
    schema = wf.capabilities[capability]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(value)


@dataclass
class Run:
    """One run of a workflow driven by hand: stages in order, then (on failure) the saga."""

    wf: Workflow
    topic: str
    event: dict[str, Any]
    workspace: Path
    run_id: str = "run-1"
    outputs: dict[str, Any] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)  # succeeded nodes, in completion order
    failed: subprocess.CompletedProcess[str] | None = None
    failed_node: str | None = None

    def payload(self, node_id: str) -> dict[str, Any]:
        node = self.wf.nodes[node_id]
        return {
            "run": {"id": self.run_id, "tenant": "acme", "topic": self.topic},
            "event": self.event,
            "inputs": {cap: self.outputs[cap] for cap in node["consumes"]},
        }

    def step(
        self, node_id: str, stage: int = 0, attempt: int = 1
    ) -> subprocess.CompletedProcess[str]:
        node = self.wf.nodes[node_id]
        proc = run_nu(
            self.wf.script(node_id),
            self.payload(node_id),
            workspace=self.workspace,
            node=node_id,
            run_id=self.run_id,
            attempt=attempt,
            stage=stage,
            timeout=node["timeout"],
        )
        if proc.returncode == 0:
            out = json.loads(proc.stdout)  # exactly one JSON document
            assert isinstance(out, dict)
            assert set(out) == set(node["produces"]), (node_id, out.keys())
            for cap, value in out.items():
                validate(self.wf, cap, value)
            self.outputs.update(out)
            self.done.append(node_id)
        return proc

    def execute(self) -> Run:
        for i, stage in enumerate(self.wf.stages(self.topic)):
            for node_id in stage:
                proc = self.step(node_id, stage=i)
                if proc.returncode != 0 and self.failed is None:
                    self.failed, self.failed_node = proc, node_id
            if self.failed is not None:
                break
        return self

    def compensate(self) -> list[subprocess.CompletedProcess[str]]:
        """Run the compensate scripts of the succeeded nodes, last one first."""
        procs = []
        for node_id in reversed(self.done):
            node = self.wf.nodes[node_id]
            if "compensate" not in node:
                continue
            payload = self.payload(node_id) | {
                "outputs": {cap: self.outputs[cap] for cap in node["produces"]}
            }
            proc = run_nu(
                self.wf.script(node_id, "compensate"),
                payload,
                workspace=self.workspace,
                node=node_id,
                run_id=self.run_id,
            )
            assert proc.returncode == 0, f"{node_id} compensation failed:\n{proc.stderr}"
            procs.append(proc)
        return procs


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def snapshot(path: Path) -> dict[str, str] | None:
    """Every file and directory under `path` with its content hash; None if it is absent."""
    if not path.exists():
        return None
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            state[os.path.relpath(os.path.join(dirpath, d), path) + "/"] = "dir"
        for f in filenames:
            p = Path(dirpath, f)
            state[os.path.relpath(p, path)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def crate_wf() -> Workflow:
    return load_workflow(CRATE_NCL)


@pytest.fixture(scope="module")
def release_wf() -> Workflow:
    return load_workflow(RELEASE_NCL)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


# --------------------------------------------------------------------------- Nickel shape


def test_crate_workflow_shape(crate_wf: Workflow) -> None:
    nodes = crate_wf.nodes
    assert set(nodes) == {"lint-crate", "fmt-crate", "build-crate"}
    assert nodes["lint-crate"]["produces"] == ["linted-code"]
    assert nodes["fmt-crate"]["produces"] == ["formatted-code"]
    assert sorted(nodes["build-crate"]["consumes"]) == ["formatted-code", "linted-code"]
    assert nodes["build-crate"]["produces"] == ["built-artifact"]
    assert all(n["trigger"] == "crate.push" for n in nodes.values())
    assert set(crate_wf.capabilities) == {"linted-code", "formatted-code", "built-artifact"}
    assert crate_wf.stages("crate.push") == [["fmt-crate", "lint-crate"], ["build-crate"]]
    for n in nodes.values():
        assert crate_wf.script(n["id"]).is_file()
        assert 0 < n["timeout"] <= 120
    for schema in crate_wf.capabilities.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_release_workflow_shape(release_wf: Workflow) -> None:
    nodes = release_wf.nodes
    assert set(nodes) == {"prepare-release", "tag-release", "upload-assets", "publish-release"}
    assert release_wf.stages("release.request") == [
        ["prepare-release"],
        ["tag-release", "upload-assets"],
        ["publish-release"],
    ]
    assert nodes["upload-assets"]["retries"]["max"] >= 1
    produced = {cap for n in nodes.values() for cap in n["produces"]}
    assert produced == set(release_wf.capabilities)
    for n in nodes.values():
        assert release_wf.script(n["id"]).is_file()
        assert release_wf.script(n["id"], "compensate").is_file()
    for schema in release_wf.capabilities.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_nickel_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The contract is really applied: a node with a bad name does not evaluate."""
    text = CRATE_NCL.read_text().replace('id = "lint-crate"', 'id = "Lint Crate"')
    copy = tmp_path / "broken.ncl"
    copy.write_text(text)
    with pytest.raises(nickel.NickelException):
        load_workflow(copy)


# --------------------------------------------------------------------------- crate pipeline


def check_finding_points_at_real_line(src: Path, f: dict[str, Any]) -> None:
    lines = (src / f["file"]).read_text().split("\n")
    line = lines[f["line"] - 1]
    col = f["column"] - 1
    rule = f["rule"]
    if rule == "trailing-whitespace":
        assert line != line.rstrip() and line[col:].strip() == "", f
    elif rule == "tab":
        assert line[col] == "\t", f
    elif rule == "todo":
        assert line[col:].startswith(("TODO", "FIXME", "XXX")), f
    elif rule == "line-too-long":
        assert len(line) > 100, f
    elif rule == "dbg-macro":
        assert line[col:].startswith("dbg!"), f
    elif rule == "missing-final-newline":
        assert f["line"] == len(lines) and lines[-1] != "", f
    elif rule == "cargo-field":
        assert f["file"] == "Cargo.toml" and line.strip() == "[package]", f


def test_sample_crate_pipeline(crate_wf: Workflow, workspace: Path) -> None:
    run = Run(crate_wf, "crate.push", {"source": "nickel/examples/sample-crate"}, workspace)
    run.execute()
    assert run.failed is None, run.failed and run.failed.stderr
    assert run.done[-1] == "build-crate"

    lint = run.outputs["linted-code"]
    assert lint["source"] == str(SAMPLE_CRATE)
    assert lint["crate"] == {"name": "tally", "version": "0.3.1"}
    assert lint["errors"] == 0 and lint["warnings"] >= 1
    assert {"Cargo.toml", "src/lib.rs", "src/main.rs"} <= set(lint["files"])
    rules = {(f["file"], f["rule"]) for f in lint["findings"]}
    assert ("src/stats.rs", "trailing-whitespace") in rules
    assert ("src/main.rs", "todo") in rules
    for f in lint["findings"]:
        check_finding_points_at_real_line(SAMPLE_CRATE, f)

    fmt = run.outputs["formatted-code"]
    out = Path(fmt["dir"])
    assert out == workspace / "formatted" / "tally-0.3.1"
    assert "src/stats.rs" in {c["file"] for c in fmt["changed"]}
    for rel in fmt["files"]:
        text = (out / rel).read_text()
        assert all(line == line.rstrip() for line in text.split("\n")), rel
        assert text.endswith("\n") and "\t" not in text, rel
    # the source itself is untouched
    assert (SAMPLE_CRATE / "src" / "stats.rs").read_text() != (out / "src" / "stats.rs").read_text()

    art = run.outputs["built-artifact"]
    tarball = Path(art["path"])
    assert tarball == workspace / "artifacts" / "tally-0.3.1.tar.gz"
    assert tarball.is_file()
    assert art["sha256"] == sha256(tarball)
    assert art["bytes"] == tarball.stat().st_size
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        members = {m.name: tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
        contents = {name: fh.read() for name, fh in members.items() if fh is not None}
    assert sorted(n.rstrip("/") for n in art["entries"]) == sorted(names)
    assert contents == {f"tally-0.3.1/{rel}": (out / rel).read_bytes() for rel in fmt["files"]}


BAD_FILES = {
    "Cargo.toml": '[package]\nname = "bad"\n',
    "src/main.rs": (
        "fn main() {\n"  # 1
        "\tlet x = dbg!(1);  \n"  # 2: tab, dbg!, trailing whitespace
        f'    let s = "{"x" * 120}";\n'  # 3: too long
        "    // FIXME: remove\n"  # 4: todo
        "}"  # 5: no final newline
    ),
    "src/lib.rs": "pub fn ok() {}\n\n\n",
}


def make_bad_crate(root: Path) -> Path:
    for rel, text in BAD_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_lint_reports_each_problem_at_its_line(
    crate_wf: Workflow, workspace: Path, tmp_path: Path
) -> None:
    src = make_bad_crate(tmp_path / "bad")
    run = Run(crate_wf, "crate.push", {"source": str(src)}, workspace)
    assert ok(run.step("lint-crate")).returncode == 0
    lint = run.outputs["linted-code"]
    got = {(f["file"], f["line"], f["rule"], f["severity"]) for f in lint["findings"]}
    assert got == {
        ("Cargo.toml", 1, "cargo-field", "error"),  # no version
        ("Cargo.toml", 1, "cargo-field", "warning"),  # edition/description/license
        ("src/main.rs", 2, "tab", "warning"),
        ("src/main.rs", 2, "dbg-macro", "error"),
        ("src/main.rs", 2, "trailing-whitespace", "warning"),
        ("src/main.rs", 3, "line-too-long", "warning"),
        ("src/main.rs", 4, "todo", "info"),
        ("src/main.rs", 5, "missing-final-newline", "warning"),
    }
    assert lint["errors"] == 2
    for f in lint["findings"]:
        check_finding_points_at_real_line(src, f)


def test_fmt_fixes_whitespace_and_reports_changes(
    crate_wf: Workflow, workspace: Path, tmp_path: Path
) -> None:
    src = make_bad_crate(tmp_path / "bad")
    run = Run(crate_wf, "crate.push", {"source": str(src)}, workspace)
    ok(run.step("fmt-crate"))
    fmt = run.outputs["formatted-code"]
    changed = {c["file"]: c for c in fmt["changed"]}
    assert set(changed) == {"src/main.rs", "src/lib.rs"}
    assert changed["src/main.rs"]["fixes"] == ["trailing-whitespace", "tab-indent", "final-newline"]
    assert changed["src/main.rs"]["lines"] == [2, 5]
    assert changed["src/lib.rs"]["fixes"] == ["final-newline"]
    out = Path(fmt["dir"])
    assert out == workspace / "formatted" / "bad"  # no version in Cargo.toml
    assert (out / "src" / "main.rs").read_text().split("\n")[1] == "    let x = dbg!(1);"
    assert (out / "src" / "main.rs").read_text().endswith("}\n")
    assert (out / "src" / "lib.rs").read_text() == "pub fn ok() {}\n"
    assert (out / "Cargo.toml").read_text() == BAD_FILES["Cargo.toml"]
    assert (src / "src" / "main.rs").read_text() == BAD_FILES["src/main.rs"]  # untouched


def test_build_refuses_a_crate_with_lint_errors(
    crate_wf: Workflow, workspace: Path, tmp_path: Path
) -> None:
    src = make_bad_crate(tmp_path / "bad")
    run = Run(crate_wf, "crate.push", {"source": str(src)}, workspace).execute()
    assert run.failed_node == "build-crate"
    assert run.failed is not None and run.failed.returncode != 0
    assert run.failed.stdout.strip() == ""
    assert "lint found 2 error(s)" in run.failed.stderr
    assert "src/main.rs:2:10: [dbg-macro]" in run.failed.stderr
    assert not (workspace / "artifacts").exists() or not any((workspace / "artifacts").iterdir())


def test_crate_steps_fail_clearly_without_a_source(crate_wf: Workflow, workspace: Path) -> None:
    for node_id in ("lint-crate", "fmt-crate"):
        run = Run(crate_wf, "crate.push", {"source": "nickel/examples/no-such-crate"}, workspace)
        proc = run.step(node_id)
        assert proc.returncode != 0
        assert "no-such-crate does not exist" in proc.stderr


# --------------------------------------------------------------------------- release pipeline


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    """The release target, named to the scripts relative to the repo root (their cwd)."""
    yield tmp_path / "release-target"


def rel(path: Path) -> str:
    return os.path.relpath(path, ROOT)


def release(
    wf: Workflow, workspace: Path, target: Path, version: str, run_id: str, **extra: Any
) -> Run:
    event = {"version": version, "target": rel(target), **extra}
    return Run(wf, "release.request", event, workspace, run_id=run_id)


def test_release_publishes(release_wf: Workflow, workspace: Path, target: Path) -> None:
    run = release(release_wf, workspace, target, "1.4.0", "run-ok", notes="Faster planner.")
    run.execute()
    assert run.failed is None, run.failed and run.failed.stderr
    assert run.done[0] == "prepare-release" and run.done[-1] == "publish-release"

    index = json.loads((target / "index.json").read_text())
    assert index["created_by"] == "run-ok"
    [entry] = index["releases"]
    assert (entry["name"], entry["version"], entry["tag"]) == ("stratum", "1.4.0", "v1.4.0")
    assert "Faster planner." in entry["notes"]

    tag = json.loads((target / "tags" / "v1.4.0").read_text())
    tarball = target / "registry" / "stratum" / "1.4.0" / "stratum-1.4.0.tar.gz"
    assert tag["object"] == sha256(tarball) == entry["object"]
    for asset in entry["assets"]:
        assert Path(asset["path"]).parent == target / "registry" / "stratum" / "1.4.0"
        assert sha256(Path(asset["path"])) == asset["sha256"]
    sums = (target / "registry" / "stratum" / "1.4.0" / "SHA256SUMS").read_text()
    assert sums == f"{sha256(tarball)}  stratum-1.4.0.tar.gz\n"
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ["RELEASE_NOTES.md", "VERSION"]
    assert (target / "staging" / "v1.4.0" / "RELEASE_NOTES.md").is_file()
    assert run.outputs["published-release"]["index"] == str(target / "index.json")


@pytest.mark.parametrize("prepopulate", [False, True], ids=["fresh-target", "earlier-release"])
def test_failed_publish_is_compensated_back_to_the_prior_state(
    release_wf: Workflow, workspace: Path, target: Path, prepopulate: bool
) -> None:
    if prepopulate:
        earlier = release(release_wf, workspace, target, "1.3.0", "run-earlier").execute()
        assert earlier.failed is None, earlier.failed and earlier.failed.stderr
    before = snapshot(target)

    run = release(release_wf, workspace, target, "1.4.0", "run-fail", fail_at="publish")
    run.execute()
    assert run.failed_node == "publish-release"
    assert run.failed is not None and run.failed.returncode != 0
    assert "fail_at=publish" in run.failed.stderr
    assert run.done == ["prepare-release", "tag-release", "upload-assets"]
    # the first two stages really changed the disk
    assert (target / "tags" / "v1.4.0").is_file()
    assert (target / "registry" / "stratum" / "1.4.0" / "stratum-1.4.0.tar.gz").is_file()
    assert (target / "staging" / "v1.4.0").is_dir()

    procs = run.compensate()
    said = "".join(p.stderr for p in procs)
    assert "upload-assets (undo): deleted uploaded asset stratum-1.4.0.tar.gz" in said
    assert "tag-release (undo): deleted tag v1.4.0" in said
    assert "prepare-release (undo): removed staging directory" in said
    assert snapshot(target) == before

    # every compensation is idempotent: a second pass changes nothing and succeeds
    run.compensate()
    assert snapshot(target) == before


@pytest.mark.parametrize("step", ["tag", "upload"])
def test_failure_in_the_middle_stage_compensates_the_rest(
    release_wf: Workflow, workspace: Path, target: Path, step: str
) -> None:
    run = release(release_wf, workspace, target, "2.0.0", "run-mid", fail_at=step)
    run.execute()
    assert run.failed_node in {"tag-release", "upload-assets"}
    assert "publish-release" not in run.done
    run.compensate()
    assert snapshot(target) is None


def test_full_release_can_be_undone(release_wf: Workflow, workspace: Path, target: Path) -> None:
    (target / "keep").mkdir(parents=True)
    (target / "keep" / "file.txt").write_text("not ours\n")
    before = snapshot(target)
    run = release(release_wf, workspace, target, "1.5.0-rc.1", "run-undo").execute()
    assert run.failed is None, run.failed and run.failed.stderr
    said = "".join(p.stderr for p in run.compensate())
    assert "publish-release (undo): deleted index" in said
    assert snapshot(target) == before


def test_flaky_upload_succeeds_on_retry(
    release_wf: Workflow, workspace: Path, target: Path
) -> None:
    run = release(release_wf, workspace, target, "1.4.1", "run-flaky", flaky_at="upload")
    ok(run.step("prepare-release"))
    first = run.step("upload-assets", attempt=1)
    assert first.returncode != 0 and "connection reset" in first.stderr
    registry = target / "registry" / "stratum" / "1.4.1"
    assert (registry / "stratum-1.4.1.tar.gz").exists()  # half-way
    assert not (registry / "SHA256SUMS").exists()
    ok(run.step("upload-assets", attempt=2))
    assert sorted(p.name for p in registry.iterdir()) == [
        "SHA256SUMS",
        "receipt.json",
        "stratum-1.4.1.tar.gz",
    ]
    ok(run.step("tag-release"))
    ok(run.step("publish-release"))
    # the retry kept track of the directories the first attempt created
    assert target / "registry" in map(Path, run.outputs["uploaded-assets"]["created"])
    run.compensate()
    assert snapshot(target) is None


def test_compensation_of_a_step_that_never_reported(
    release_wf: Workflow, workspace: Path, target: Path
) -> None:
    """A half-done upload (no outputs) is still cleaned up from its receipt."""
    run = release(release_wf, workspace, target, "3.0.0", "run-half", flaky_at="upload")
    ok(run.step("prepare-release"))
    assert run.step("upload-assets").returncode != 0
    payload = run.payload("upload-assets")
    undo = release_wf.script("upload-assets", "compensate")
    ok(run_nu(undo, payload, workspace=workspace, run_id="run-half"))
    assert not (target / "registry").exists()
    run.compensate()
    assert snapshot(target) is None


def test_release_refuses_to_republish(release_wf: Workflow, workspace: Path, target: Path) -> None:
    first = release(release_wf, workspace, target, "1.4.0", "run-a").execute()
    assert first.failed is None
    before = snapshot(target)
    second = release(release_wf, workspace, target, "1.4.0", "run-b").execute()
    assert second.failed_node == "prepare-release"
    assert second.failed is not None and "already published" in second.failed.stderr
    assert snapshot(target) == before


def test_compensations_leave_other_runs_alone(
    release_wf: Workflow, workspace: Path, target: Path
) -> None:
    """Undoing run B must not delete the tag and uploads that run A made."""
    first = release(release_wf, workspace, target, "1.4.0", "run-a").execute()
    assert first.failed is None
    before = snapshot(target)
    other = release(release_wf, workspace, target, "1.4.0", "run-b")
    other.outputs = dict(first.outputs)
    for node_id in ("publish-release", "upload-assets", "tag-release"):
        payload = other.payload(node_id)  # no outputs: the step "failed" in run B
        ok(
            run_nu(
                release_wf.script(node_id, "compensate"),
                payload,
                workspace=workspace,
                run_id="run-b",
            )
        )
    assert snapshot(target) == before


def test_release_rejects_a_bad_version(release_wf: Workflow, workspace: Path, target: Path) -> None:
    run = release(release_wf, workspace, target, "../../etc", "run-bad")
    proc = run.step("prepare-release")
    assert proc.returncode != 0 and "must look like 1.4.0" in proc.stderr
    assert not target.exists()
