"""Turns a shell block into the script the document's bash session sources: split into top-level
commands (bash itself decides where one ends, so heredocs, quotes across lines, `\\`
continuations and loops need no parser of ours), each followed by a check of its exit status,
and each line ending in `&` started in the background with its output in a log, waited for until
it says `listening on`.

Why the check after each command: `set -e` does not stop at `a && b` when `a` fails, which is
exactly how a README chains two commands; a document's command that fails must fail its test."""
import dataclasses
import re
import subprocess

# A command line ending in `&` (not `&&`, `|&` or `>&`), maybe followed by a comment.
_BACKGROUND = re.compile(r"^(?P<command>.*[^&|>\s])\s*&\s*(#.*)?$", re.DOTALL)


@dataclasses.dataclass
class Command:
    offset: int  # line of the block (0-based) where the command starts
    text: str
    background: bool


def _complete(text):
    """Whether `text` is whole commands to bash (no open quote, heredoc, loop or continuation)."""
    last = text.rstrip("\n").split("\n")[-1]
    if (len(last) - len(last.rstrip("\\"))) % 2 == 1:
        return False
    check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return check.returncode == 0 and not check.stderr.strip()


def commands(code):
    """The block's top-level commands; comments and blank lines between them are dropped."""
    lines = code.rstrip("\n").split("\n")
    found, start = [], 0
    for end in range(len(lines)):
        text = "\n".join(lines[start:end + 1])
        if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in lines[start:end + 1]):
            start = end + 1
            continue
        if _complete(text) or end == len(lines) - 1:
            found.append(_command(start, text))
            start = end + 1
    return found


def _command(offset, text):
    background = _BACKGROUND.match(text)
    if background and not text.rstrip().endswith("&&"):
        return Command(offset, background["command"], True)
    return Command(offset, text, False)


def _simple(text):
    """Whether `text` is one simple command: no unquoted `|`, `;`, `&`, `<`, `>`, `(`, `{`, `#`
    or line break other than a `\\` continuation."""
    quote, escaped = None, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "|;&<>(){}#\n":
            return False
    return quote is None


def script(code, first_line, state, name):
    """The bash text for a block whose first code line is `first_line` of the document `name`.

    `state` is the session's folder (logs of background processes go there)."""
    out = []
    for command in commands(code):
        line = first_line + command.offset
        out.append(f"__doc_at {line}")
        if command.background:
            log = f"{state}/bg-{name}-L{line}.log"
            if _simple(command.text):  # no wrapper: `$!` and `kill %1` reach the server itself
                out.append(f"{command.text.rstrip()} >{_quote(log)} 2>&1 &")
            else:
                out += ["{ " + command.text, f"}} >{_quote(log)} 2>&1 &"]
            out.append(f"__doc_bg $! {_quote(log)}")
        else:
            out.append(command.text)
        out.append(f"__doc_check $? {line}")
    return "\n".join(out) + "\n"


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"
