"""Reads a Markdown document into the steps the harness runs: its fenced ```sh/```bash/```python
blocks, the hidden `<!-- doc: run … -->` fixtures, and the `<!-- doc: output -->` blocks that
say what the previous block prints. A document the harness cannot read unambiguously is an error
naming the file and line, never a silently skipped block: a skipped block is a block that can
drift."""
import dataclasses
import re

# Fence languages that run, and how.
RUNNABLE = {"sh": "sh", "bash": "sh", "python": "python"}
MARKERS = ("illustrative", "output", "fails", "run")

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*doc:\s*(?P<name>[\w-]*)(?P<rest>.*)$")


class DocError(Exception):
    """A document the harness cannot read; the message names the file and line."""


@dataclasses.dataclass
class Step:
    """One thing to do, in document order.

    kind: "run" (a shown block), "hidden" (a `<!-- doc: run -->` fixture) or "output" (the
    expected output of the run step at index `target`). `line` is the 1-based line of the
    block's opening fence (of the marker, for a hidden fixture); `code` the block's text."""

    kind: str
    lang: str
    code: str
    line: int
    fails: bool = False
    target: int | None = None
    code_line: int = 0  # the document line of the code's first line

    def __post_init__(self):
        if not self.code_line:
            self.code_line = self.line + 1


@dataclasses.dataclass
class _Fence:
    lang: str
    code: str
    line: int
    end: int  # index of the line after the closing fence


def _read_fence(lines, start, name):
    """The fenced block opening at lines[start]; its content loses the fence's indentation."""
    opening = _FENCE.match(lines[start])
    indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
    closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
    for end in range(start + 1, len(lines)):
        if closing.match(lines[end]):
            body = [line[len(indent):] if line.startswith(indent) else line.lstrip(" ") for line in lines[start + 1:end]]
            lang = info.split()[0].lower() if info else ""
            return _Fence(lang, "\n".join(body) + ("\n" if body else ""), start + 1, end + 1)
    raise DocError(f"{name}:{start + 1}: the fenced block opened here ({fence}) is never closed")


def _read_hidden(lines, start, name, rest):
    """The shell lines of `<!-- doc: run … -->`, on the marker's line or the lines up to `-->`."""
    if "-->" in rest:
        return rest.split("-->", 1)[0].strip() + "\n", start + 1
    body = [rest.strip()] if rest.strip() else []
    for end in range(start + 1, len(lines)):
        if "-->" in lines[end]:
            before = lines[end].split("-->", 1)[0]
            if before.strip():
                body.append(before)
            return "\n".join(body) + "\n", end + 1
        body.append(lines[end])
    raise DocError(f"{name}:{start + 1}: `<!-- doc: run` is never closed with `-->`")


def parse(text, name="document"):
    """The steps of a document, in order. `name` is used in error messages."""
    lines = text.split("\n")
    steps = []
    pending = None  # (marker name, line) waiting for its fenced block
    last_runnable = None  # the last runnable block seen: its step index, or "illustrative"
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        if marker:
            what, rest = marker["name"], marker["rest"]
            if what not in MARKERS:
                raise DocError(f"{name}:{i + 1}: unknown marker `doc: {what}` (known: {', '.join(MARKERS)})")
            if pending:
                raise DocError(f"{name}:{pending[1]}: `doc: {pending[0]}` is not followed by a fenced block")
            if what == "run":
                code, after = _read_hidden(lines, i, name, rest)
                if not code.strip():
                    raise DocError(f"{name}:{i + 1}: `<!-- doc: run -->` holds no command")
                first = i + 1 if rest.strip() and not rest.strip().startswith("-->") else i + 2
                steps.append(Step("hidden", "sh", code, i + 1, code_line=first))
                i = after
                continue
            if rest.strip() != "-->":
                raise DocError(f"{name}:{i + 1}: write the marker alone on its line: `<!-- doc: {what} -->`")
            pending = (what, i + 1)
            i += 1
            continue
        if _FENCE.match(line):
            fence = _read_fence(lines, i, name)
            what = pending[0] if pending else None
            pending = None
            runnable = fence.lang in RUNNABLE
            if what == "output":
                if last_runnable is None or last_runnable == "illustrative":
                    raise DocError(f"{name}:{fence.line}: `doc: output` follows no executed block")
                if any(s.kind == "output" and s.target == last_runnable for s in steps):
                    raise DocError(f"{name}:{fence.line}: a second `doc: output` for the block at line {steps[last_runnable].line}")
                steps.append(Step("output", "text", fence.code, fence.line, target=last_runnable))
            elif what == "illustrative":
                if runnable:
                    last_runnable = "illustrative"
            elif runnable:
                steps.append(Step("run", RUNNABLE[fence.lang], fence.code, fence.line, fails=what == "fails"))
                last_runnable = len(steps) - 1
            elif what == "fails":
                raise DocError(f"{name}:{fence.line}: `doc: fails` marks a ```{fence.lang or '(no language)'} block, which never runs")
            i = fence.end
            continue
        if pending and line.strip():
            raise DocError(f"{name}:{pending[1]}: `doc: {pending[0]}` is not followed by a fenced block")
        i += 1
    if pending:
        raise DocError(f"{name}:{pending[1]}: `doc: {pending[0]}` is not followed by a fenced block")
    return steps
