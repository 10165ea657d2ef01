"""Every Nickel and shell block of the project's Markdown files is one that works.

Readers copy these blocks, so each is checked against the real thing:

- **Nickel** (```nickel). The first line is a comment naming the real file the block comes
  from (`# nickel/workflows/crate/crate.ncl, schemas shortened`); that is the one marker
  convention. A block that is a whole workflow file (it has `nodes`) is written into a
  definitions folder of its own beside the `.nu` files of that file's folder and must load
  with Stratum's loader (`check_definitions`, library `nickel/lib`: typecheck, scripts
  present, one producer per capability, no cycle); its nodes must be the real file's nodes
  exactly, and its capability schemas may only leave constraints out (so they accept
  whatever the real schemas accept). A block that is one node (a record with `id`) must
  agree, field by field, with that node of the real file (`# ...` elides the rest).
- **Shell** (```sh, ```bash, ```shell, ```console; in console blocks the `$ ` lines). Every
  block parses (`bash -n`); a `stratum` command names an existing (sub)command and only
  options and arguments it accepts (parsed by the real Typer app); `make` names real
  Makefile targets; every program is one this test knows; every repository path a
  command reads exists or is git-ignored (made by an earlier step), and every file a
  command writes (`--out`, `>`, `cp`'s destination) is git-ignored or outside the
  checkout. `<name>` is a placeholder (tests/doc_snippets.py); it is filled with a word.

tests/e2e/test_readme_session.py then runs the README's session for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

import nickel
from stratum.graph import load_graph
from stratum.graph.loader import check_definitions
from stratum_host.cli.main import app
from tests.doc_snippets import NICKEL, SHELL, Block, Simple, blocks, commands, script
from tests.doc_snippets import simple_commands as split

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "nickel" / "lib"
EXAMPLES = ROOT / "nickel" / "workflows"
SOURCE = re.compile(r"^#\s*(\S+\.ncl)\b")
# programs the docs may run besides `stratum`, `make`, `source` and the repository's own
KNOWN_TOOLS = frozenset({"docker", "kubectl", "cp", "chown", "printf", "tail", "curl"})
# tracked and new (not ignored) Markdown files: what a reader of the checkout sees
DOCS = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
).stdout.split()
BLOCKS = [
    b for doc in DOCS if (ROOT / doc).is_file() for b in blocks(doc, (ROOT / doc).read_text())
]
NICKEL_BLOCKS = [block for block in BLOCKS if block.lang in NICKEL]
SHELL_BLOCKS = [block for block in BLOCKS if block.lang in SHELL]


def where(block: Block) -> str:
    return block.where


def test_the_docs_have_blocks_of_both_kinds() -> None:
    """The checks below are not vacuous: the README's examples are among them."""
    readme = {block.lang for block in BLOCKS if block.doc == "README.md"}
    assert {"nickel", "sh", "console"} <= readme
    assert {block.doc for block in SHELL_BLOCKS} >= {"README.md", "deploy/README.md"}


# --------------------------------------------------------------------------- Nickel


def evaluate(expression: str) -> Any:
    return json.loads(nickel.run(expression, import_paths=[str(LIB)]))


def source_of(block: Block) -> Path:
    named = SOURCE.match(block.text)
    assert named, f"{block.where}: a Nickel block starts with `# <the file it comes from>`"
    source = ROOT / named.group(1)
    assert source.is_file(), f"{block.where}: names {named.group(1)}, which does not exist"
    return source


def looser(shown: Any, real: Any) -> bool:
    """Whether the JSON Schema `shown` only leaves constraints of `real` out: fewer
    required fields, fewer properties described, keywords dropped (so it accepts all that
    `real` accepts)."""
    if not isinstance(shown, dict) or not isinstance(real, dict):
        return bool(shown == real)
    for key, value in shown.items():
        if key == "required":
            if not set(value) <= set(real.get("required", [])):
                return False
        elif key == "properties":
            props = real.get("properties", {})
            if not all(name in props and looser(v, props[name]) for name, v in value.items()):
                return False
        elif key not in real or not looser(value, real[key]):
            return False
    return True


def portable(node: Any) -> dict[str, Any]:
    """A loaded node without where it was loaded from (scripts by name)."""
    data: dict[str, Any] = node.model_dump(mode="json", exclude={"source"})
    for key in ("handler", "compensate"):
        if data[key] is not None:
            data[key] = Path(data[key]).name
    return data


@pytest.mark.parametrize("block", NICKEL_BLOCKS, ids=where)
def test_a_nickel_block_is_true(block: Block, tmp_path: Path) -> None:
    source = source_of(block)
    snippet = tmp_path / "snippet.ncl"
    snippet.write_text(block.text)
    shown = evaluate(f'import "{snippet}"')
    real = load_graph(EXAMPLES, LIB)
    real_nodes = {n.id: n for n in real.nodes.values() if n.source == source}
    assert real_nodes, f"{block.where}: {source} declares no node of the examples"

    if "nodes" in shown:  # a whole workflow file, loaded as one
        folder = tmp_path / "definitions"
        folder.mkdir()
        for script_file in source.parent.glob("*.nu"):
            shutil.copy(script_file, folder)
        (folder / source.name).write_text(block.text)
        problems = check_definitions(folder, LIB)
        assert not problems, f"{block.where}: " + "\n".join(p.render() for p in problems)
        graph = load_graph(folder, LIB)
        for node_id, node in graph.nodes.items():
            assert node_id in real_nodes, f"{block.where}: {source} has no node {node_id}"
            assert portable(node) == portable(real_nodes[node_id]), f"{block.where}: {node_id}"
        for name, schema in graph.schemas.items():
            assert looser(schema, real.schemas.get(name)), (
                f"{block.where}: the schema of {name} is not {source.name}'s, shortened"
            )
    else:  # one node: its fields are the real node's
        assert "id" in shown, f"{block.where}: neither a workflow file nor a node"
        declared = {n["id"]: n for n in evaluate(f'import "{source}"')["nodes"]}
        assert shown["id"] in declared, f"{block.where}: {source} has no node {shown['id']}"
        for key, value in shown.items():
            assert declared[shown["id"]].get(key) == value, f"{block.where}: `{key}` differs"


# --------------------------------------------------------------------------- shell


def ignored(path: str) -> bool:
    """Whether git ignores `path`, as a file or as a folder (`deploy/nats/` is a pattern
    for a folder: `stratum nats config --out deploy/nats` makes one)."""
    names = [path, path.rstrip("/") + "/"]
    found = subprocess.run(["git", "check-ignore", "--", *names], cwd=ROOT, capture_output=True)
    return found.returncode == 0


def outside(path: str) -> bool:
    return Path(path).is_absolute() and not Path(path).resolve().is_relative_to(ROOT)


def read_problem(path: str) -> str | None:
    if outside(path) or (ROOT / path).exists() or ignored(path):
        return None
    return f"reads {path}, which is neither in the repository nor made in an ignored place"


def write_problem(path: str) -> str | None:
    if outside(path) or (not Path(path).is_absolute() and ignored(path)):
        return None
    return f"writes {path}, which git does not ignore: write under .stratum/ instead"


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, re.MULTILINE))


def stratum_problems(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(problems, paths read, paths written) of `stratum ARGS`, parsed by the real app."""
    command: Any = typer.main.get_command(app)
    path = ["stratum"]
    while isinstance(command, typer.core.TyperGroup):
        if not args or args[0] not in command.commands:
            wanted = args[0] if args else "nothing"
            return [f"`{' '.join(path)}` has no command {wanted}"], [], []
        path.append(args[0])
        command, args = command.commands[args.pop(0)], args
    try:
        context = command.make_context(" ".join(path), list(args))
    except Exception as error:  # the parser's usage errors: unknown option, missing value
        return [f"`{' '.join(path)}` refuses its arguments: {error}"], [], []
    reads: list[str] = []
    writes: list[str] = []
    for param in command.params:
        value = context.params.get(param.name)
        if isinstance(value, Path):
            (writes if "--out" in param.opts else reads).append(str(value))
    return [], reads, writes


def problems_of(simple: Simple) -> list[str]:
    """What is wrong with one simple command of the docs."""
    program, *args = simple.words
    problems: list[str] = []
    reads = [target for op, target in simple.redirects if op == "<"]
    writes = [target for op, target in simple.redirects if op != "<"]
    if program == "stratum" or program.endswith("/stratum"):
        problems, read, written = stratum_problems(list(args))
        reads += read
        writes += written
    else:
        paths = [a for a in args if "/" in a and not a.startswith("-") and "://" not in a]
        paths = [a for a in paths if not re.search(r"\s", a)]
        if program == "make":
            missing = {a for a in args if not a.startswith("-")} - makefile_targets()
            problems += [f"make has no target {target}" for target in sorted(missing)]
        elif program == "cp":
            writes.append(paths.pop())
        elif "/" in program:
            reads.append(program)
        elif program not in KNOWN_TOOLS | {"source"}:
            problems.append(f"runs {program}, which this test does not know (a typo?)")
        reads += paths
    problems += [p for path in reads if (p := read_problem(path))]
    problems += [p for path in writes if (p := write_problem(path))]
    return problems


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=where)
def test_a_shell_block_parses_and_names_what_exists(block: Block) -> None:
    parsed = subprocess.run(["bash", "-n"], input=script(block), capture_output=True, text=True)
    assert parsed.returncode == 0, f"{block.where}: bash -n: {parsed.stderr}"
    problems = [
        f"{command.where}: {problem}"
        for command in commands(block)
        for simple in split(command.text)
        for problem in problems_of(simple)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("stratum shwo run-1", "has no command shwo"),
        ("stratum publisher", "has no command nothing"),
        ("stratum show run-1 --bogus", "refuses its arguments"),
        ("stratum audit export --ndjson --out audit.ndjson", "writes audit.ndjson"),
        ("stratum emit crate.push --tenant acme --seed-file no/such.seed", "reads no/such.seed"),
        ("make upp", "make has no target upp"),
        ("sudo chown -R 1:1 deploy/nope", "reads deploy/nope"),
        ("echo hi > notes.txt", "runs echo"),
        ("printf x > notes.txt", "writes notes.txt"),
    ],
)
def test_the_shell_check_refuses_what_would_not_work(line: str, says: str) -> None:
    problems = [problem for simple in split(line) for problem in problems_of(simple)]
    assert any(says in problem for problem in problems), problems
