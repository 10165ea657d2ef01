"""The code blocks of the project's Markdown files, and the shell commands in them.

Pure: text in, blocks and commands out. The tests that check the blocks
(tests/integration/test_doc_snippets.py) and run the README's session
(tests/e2e/test_readme_session.py) read the docs through this, so both agree on what a
block and a command are.

- A block is a fenced block (```lang). `nickel` blocks are Nickel; `sh`, `bash`, `shell`
  and `console` blocks are shell. Other blocks (diagrams, Python, JSON, HCL) are not read.
- In a shell block every line is a command (a line ending with `\\` goes on to the next);
  blank and comment lines are skipped. In a `console` block only lines starting with `$ `
  are commands; the lines after one, up to the next, are what it printed.
- `<name>` in a command (`<run-id>`, `<digest>`) is a placeholder the reader fills in.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

NICKEL = frozenset({"nickel"})
SHELL = frozenset({"sh", "bash", "shell", "console"})
FENCE = re.compile(r"^```(\S*)\s*$")
HEADING = re.compile(r"^#{1,6} (.+)$")
PLACEHOLDER = re.compile(r"<([a-z][a-z0-9-]*)>")
PROMPT = "$ "
# what separates simple commands, and what redirects one
SEPARATORS = frozenset({"&&", "||", "|", ";", "&"})
REDIRECTS = frozenset({">", ">>", "<"})


@dataclass(frozen=True)
class Block:
    doc: str  # the Markdown file, relative to the repository root
    line: int  # 1-based line of its first content line
    lang: str
    text: str
    section: str  # the heading it is under ("" before the first)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


@dataclass(frozen=True)
class Command:
    """One command line of a shell block: what the reader types, and (console) what the
    block shows it printing."""

    block: Block
    line: int
    text: str
    output: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.block.doc}:{self.line}"


@dataclass(frozen=True)
class Simple:
    """A simple command: its words (assignments and `sudo` left out) and its redirections
    as (operator, target)."""

    words: tuple[str, ...]
    redirects: tuple[tuple[str, str], ...] = field(default=())


def blocks(doc: str, text: str) -> list[Block]:
    """Every fenced block of the Markdown `text` of `doc`."""
    found: list[Block] = []
    section = ""
    lang: str | None = None
    body: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if lang is None:
            if fence:
                lang, body, start = fence.group(1), [], number + 1
            elif heading := HEADING.match(line):
                section = heading.group(1).strip()
        elif fence and not fence.group(1):
            found.append(Block(doc, start, lang, "\n".join(body) + "\n", section))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        raise ValueError(f"{doc}:{start - 1}: a ``` block is never closed")
    return found


def commands(block: Block) -> list[Command]:
    """The command lines of a shell block, continuation lines joined."""
    console = block.lang == "console"
    found: list[Command] = []
    pending: list[str] = []
    output: list[str] = []
    first = 0

    def close() -> None:
        if found and console:
            last = found[-1]
            found[-1] = Command(last.block, last.line, last.text, tuple(output))
        output.clear()

    for offset, line in enumerate(block.text.splitlines()):
        number = block.line + offset
        if pending:
            pending.append(line)
        elif console and line.startswith(PROMPT):
            close()
            pending, first = [line[len(PROMPT) :]], number
        elif console:
            output.append(line)
            continue
        elif line.strip() and not line.lstrip().startswith("#"):
            pending, first = [line], number
        else:
            continue
        if not pending[-1].endswith("\\"):
            found.append(Command(block, first, "\n".join(pending)))
            pending = []
    if pending:
        raise ValueError(f"{block.doc}:{first}: the command's last line ends with a backslash")
    close()
    return found


def placeholders(text: str) -> list[str]:
    """The placeholder names in a command, in order."""
    return PLACEHOLDER.findall(text)


def fill(text: str, values: dict[str, str] | None = None) -> str:
    """`text` with each `<name>` replaced by `values[name]` (default: the name itself, a
    plain word, so the command parses as the reader's would)."""
    chosen = values or {}
    return PLACEHOLDER.sub(lambda m: chosen.get(m.group(1), m.group(1)), text)


def script(block: Block) -> str:
    """What a shell would run for the block: its command lines, placeholders filled."""
    return "".join(fill(command.text) + "\n" for command in commands(block))


def simple_commands(text: str) -> list[Simple]:
    """The simple commands of one command line (split at `&&`, `||`, `|`, `;`, `&`)."""
    # a backslash at the end of a line joins the next one, as in the shell
    lexer = shlex.shlex(fill(text).replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    found: list[Simple] = []
    words: list[str] = []
    redirects: list[tuple[str, str]] = []
    tokens = iter(lexer)
    for token in tokens:
        if token in SEPARATORS:
            found.append(_simple(words, redirects))
            words, redirects = [], []
        elif token in REDIRECTS:
            redirects.append((token, next(tokens)))
        else:
            words.append(token)
    found.append(_simple(words, redirects))
    return [simple for simple in found if simple.words]


def _simple(words: list[str], redirects: list[tuple[str, str]]) -> Simple:
    rest = list(words)
    while rest and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", rest[0]) or rest[0] == "sudo"):
        rest.pop(0)
    return Simple(tuple(rest), tuple(redirects))
