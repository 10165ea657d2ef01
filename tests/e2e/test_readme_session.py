"""The README's Quick-start session, run as a reader copies it, in a copy of the checkout.

The copy holds what the checkout holds (tracked and new files, not ignored ones) plus a
link to its `.venv`, committed to a git repository of its own. `stratum up` starts there as
`make up` starts it (on a free HTTP port instead of 7464: the suite shares the machine),
data under the copy's `.stratum/`. Then, in the copy, each command of the session block
(the Quick-start ```sh block that begins with `source .venv/bin/activate`) runs in order
through bash with the `source` line before it:

- `<run-id>` and `<letter-id>` become the ids the latest command printed; there is one
  dead letter to redrive because the test first publishes an event that is not JSON (a
  fresh Stratum has none);
- each command exits 0, except the release asked to fail (`fail_at`), which `emit --wait`
  ends with 2 as the README says; `stratum top`, live, gets Ctrl-C after its first screen.

Then every README ```console block whose commands name no literal run id (such a block
shows a run the reader cannot make by copying, e.g. one from an altered event) runs the
same way, and what it shows must come out in order (ids, hashes, ports, times and
durations aside); a command shown printing `error:` must fail, a `--wait` shown ending
in another status than Succeeded exits 2.

At the end `git status --porcelain` of the copy is empty: every command wrote only where
git ignores it. The real checkout is left as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nats
import pytest

from tests.conftest import stop_process
from tests.doc_snippets import Block, Command, blocks, commands, fill, placeholders
from tests.e2e.test_cli import ROOT, start_up, stop

IDS = {"run-id": re.compile(r"\brun-[0-9a-f]{20}\b"), "letter-id": re.compile(r"\bdl-[0-9a-f]+\b")}
# what differs from one run to the next in what a command prints
VOLATILE = [
    (re.compile(r"\brun-[0-9a-f]{20}\b"), "run-ID"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "UUID"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "HASH"),
    (re.compile(r"\bU[A-Z2-7]{55}\b"), "PUBLIC-KEY"),
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z"), "TIME"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\b\d+(\.\d+)? m?s\b"), "N ms"),
]
SECONDS = 120  # at most, per command


def normal(line: str) -> str:
    for pattern, stands_for in VOLATILE:
        line = pattern.sub(stands_for, line)
    return line.rstrip()


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@127.0.0.1", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def copy_checkout(into: Path) -> Path:
    """The checkout's files (what `git status` would show as the tree), committed."""
    listed = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name, follow_symlinks=False)
    (into / ".venv").symlink_to(ROOT / ".venv")
    git(into, "init", "-q")
    # a reader's .venv is a folder, which `.venv/` in .gitignore matches; this is a link
    (into / ".git" / "info" / "exclude").write_text(".venv\n")
    git(into, "add", "-A")
    git(into, "commit", "-qm", "the checkout")
    return into


async def publish_not_json(data_dir: Path) -> None:
    """An event that is not JSON, published as Stratum's core user: ingest dead-letters it."""
    endpoint = json.loads((data_dir / "endpoint.json").read_text())
    seed = (data_dir / "nkeys" / "stratum.seed").read_text().strip()
    nc = await nats.connect(endpoint["nats"], nkeys_seed_str=seed)
    try:
        await nc.jetstream().publish(f"{endpoint['subject_prefix']}.events.acme.crate.push", b"{")
    finally:
        await nc.close()


def shell(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=SECONDS
    )


def interrupted(line: str, cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    """Run a live command until it has drawn a screen, then Ctrl-C it: its exit code and
    what it drew."""
    with log.open("w") as sink:
        process = subprocess.Popen(
            ["bash", "-c", line],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SECONDS
        while not log.read_text().strip() and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's group
        return process.wait(timeout=SECONDS), log.read_text()
    finally:
        stop_process(process)


def session_block(readme: list[Block]) -> Block:
    found = [
        block
        for block in readme
        if block.section == "Quick start"
        and block.lang == "sh"
        and commands(block)[0].text.startswith("source ")
    ]
    assert len(found) == 1, "the README's Quick start has one session block"
    return found[0]


def expected_exit(command: Command) -> int:
    """What the README says the command ends with."""
    if any(line.startswith("error: ") for line in command.output):
        return 1
    if "--wait" not in command.text:
        return 0
    # a run shown as `run-…  Denied  acme/…`, or one asked to fail
    status = command.output[0].split()[1:2] if command.output else []
    failing = '"fail_at"' in command.text or status not in ([], ["Succeeded"])
    return 2 if failing else 0


@pytest.mark.slow
def test_the_readme_session_runs_as_written(tmp_path: Path) -> None:
    before = git(ROOT, "status", "--porcelain")
    copy = copy_checkout(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUM_", "OTEL_"))}
    readme = blocks("README.md", (ROOT / "README.md").read_text())
    data_dir = copy / ".stratum"
    process = start_up(env, data_dir, cwd=copy)
    try:
        asyncio.run(publish_not_json(data_dir))
        deadline = time.monotonic() + SECONDS
        while not json.loads(shell(".venv/bin/stratum dead-letters --json", copy, env).stdout):
            assert time.monotonic() < deadline, "the event that is not JSON was not dead-lettered"
            time.sleep(0.2)

        prelude: list[str] = []  # what the reader's shell has run before: `source ...`
        ids: dict[str, str] = {}
        ran = 0
        for command in commands(session_block(readme)):
            assert set(placeholders(command.text)) <= set(ids), f"{command.where}: no id yet"
            line = " && ".join([*prelude, fill(command.text, ids)])
            if command.text.startswith("source "):
                prelude.append(command.text)
            if command.text.startswith("stratum top") and "--once" not in command.text:
                code, printed = interrupted(line, copy, env, tmp_path / "live.log")
                assert printed.strip(), f"{command.where}: `{line}` drew nothing"
            else:
                result = shell(line, copy, env)
                code, printed = result.returncode, result.stdout + result.stderr
            assert code == expected_exit(command), f"{command.where}: {line}\n{printed}"
            for name, pattern in IDS.items():
                if found := pattern.search(printed):
                    ids[name] = found.group(0)
            ran += 1
        assert ran >= 10 and {"run-id", "letter-id"} <= set(ids)

        for block in readme:
            steps = commands(block) if block.lang == "console" else []
            if not steps or any(IDS["run-id"].search(step.text) for step in steps):
                continue
            for command in steps:
                result = shell(" && ".join([*prelude, command.text]), copy, env)
                lines = [normal(line) for line in (result.stdout + result.stderr).splitlines()]
                assert result.returncode == expected_exit(command), (
                    f"{command.where}: {command.text}\n{result.stdout}{result.stderr}"
                )
                missing = [normal(line) for line in command.output]
                for line in lines:
                    if missing and line == missing[0]:
                        missing.pop(0)
                assert not missing, f"{command.where}: not printed: {missing}\n" + "\n".join(lines)
    finally:
        code = stop(process)
    assert code == 0
    assert git(copy, "status", "--porcelain") == ""
    assert git(ROOT, "status", "--porcelain") == before
