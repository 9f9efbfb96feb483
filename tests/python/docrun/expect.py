"""Compares what a block printed with the `<!-- doc: output -->` block after it. Line by line,
in order; `...` inside a line matches any text, a line that is only `...` any number of lines
(none included). Trailing spaces, colour codes and blank lines at either end do not count: a
reader does not see them."""
import re

ELLIPSIS = "..."
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _lines(text):
    lines = [ANSI.sub("", line).rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _pattern(expected_line):
    if expected_line.strip() == ELLIPSIS:
        return None  # any number of lines
    return re.compile(".*".join(re.escape(piece) for piece in expected_line.split(ELLIPSIS)))


def match_output(expected, actual):
    """None when `actual` matches `expected`, else a report of where it stops matching."""
    want, got = _lines(expected), _lines(actual)
    patterns = [_pattern(line) for line in want]
    # reach[j]: the first i expected lines can match the first j actual lines.
    reach = [True] + [False] * len(got)
    furthest = 0  # how many expected lines matched somewhere: where the report points
    for i, pattern in enumerate(patterns):
        if pattern is None:
            for j in range(1, len(got) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and bool(pattern.fullmatch(got[j])) for j in range(len(got))]
        if not any(reach):
            break
        furthest = i + 1
    if reach[len(got)]:
        return None
    if furthest < len(want):
        where = f"expected line {furthest + 1} `{want[furthest]}` does not match in order"
    else:
        where = "the output goes on after the last expected line (end the expected block with `...`?)"
    return "\n".join([where, "  expected:", *("    " + line for line in want), "  actual:", *("    " + line for line in got[-60:])])
