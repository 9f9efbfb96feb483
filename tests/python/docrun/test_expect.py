"""Expected output: line by line, `...` inside a line and as a whole line."""
import pytest

from docrun.expect import match_output


@pytest.mark.parametrize(
    "expected, actual",
    [
        ("a\nb\n", "a\nb\n"),
        ("a\nb", "\n\na  \nb\n\n"),  # blank lines at the ends and trailing spaces do not count
        ("ready in ... ms", "ready in 42 ms"),
        ("...\nlast", "one\ntwo\nlast"),
        ("first\n...", "first\ntwo\nthree"),
        ("first\n...\nlast", "first\nlast"),  # `...` may stand for no line at all
        ("a\n...\nc\n...\ne", "a\nb\nc\nd\ne"),
        ("\x1b[32mcolour\x1b[0m", "colour"),
        ("ok", "\x1b[32mok\x1b[0m"),
        ("x [a.b] (c)*", "x [a.b] (c)*"),  # regex characters are literal
    ],
)
def test_matching_outputs(expected, actual):
    assert match_output(expected, actual) is None


@pytest.mark.parametrize(
    "expected, actual, report",
    [
        ("a\nb", "a\nc", "expected line 2 `b` does not match in order"),
        ("a\nb", "b\na", "expected line 1 `a` does not match in order"),
        ("a", "a\nb", "the output goes on after the last expected line"),
        ("a\nb", "a", "expected line 2 `b` does not match in order"),
        ("ready in ... ms", "ready in 42 s", "expected line 1"),
        ("x.y", "xzy", "expected line 1"),
        ("...\nlast", "", "expected line 2 `last`"),
    ],
)
def test_differences_are_reported_with_the_first_line_that_does_not_match(expected, actual, report):
    problem = match_output(expected, actual)
    assert problem is not None and problem.startswith(report)
    assert "expected:" in problem and "actual:" in problem
