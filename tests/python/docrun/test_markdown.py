"""The document reader: which blocks run, what the markers do, and the documents it refuses."""
import pytest

from docrun.markdown import DocError, parse


def kinds(steps):
    return [(s.kind, s.lang, s.line, s.fails, s.target) for s in steps]


def test_runnable_blocks_run_in_order_and_others_are_skipped():
    doc = "# t\n\n```sh\necho a\n```\n\n```toml\nx = 1\n```\n\n```bash\necho b\n```\n\n```python\nprint(1)\n```\n\n```text\nout\n```\n"
    steps = parse(doc)
    assert kinds(steps) == [("run", "sh", 3, False, None), ("run", "sh", 11, False, None), ("run", "python", 15, False, None)]
    assert steps[0].code == "echo a\n" and steps[0].code_line == 4


def test_info_string_and_longer_fences_and_indentation():
    doc = "- item\n\n  ````sh title\n  echo a\n  ```\n  echo b\n  ````\n"
    (step,) = parse(doc)
    assert step.code == "echo a\n```\necho b\n"


def test_illustrative_blocks_never_run():
    doc = "<!-- doc: illustrative -->\n```sh\nmake demo\n```\n```sh\necho ok\n```\n"
    assert [s.code for s in parse(doc)] == ["echo ok\n"]


def test_output_belongs_to_the_previous_executed_block():
    doc = "```sh\necho a\n```\n\n```toml\nx = 1\n```\n\n<!-- doc: output -->\n```text\na\n```\n"
    steps = parse(doc)
    assert kinds(steps) == [("run", "sh", 1, False, None), ("output", "text", 10, False, 0)]
    assert steps[1].code == "a\n"


def test_fails_marks_the_block():
    doc = "<!-- doc: fails -->\n```sh\nfalse\n```\n<!-- doc: output -->\n```text\n```\n"
    steps = parse(doc)
    assert kinds(steps) == [("run", "sh", 2, True, None), ("output", "text", 6, False, 0)]


def test_hidden_fixture_on_several_lines_and_on_one():
    doc = "<!-- doc: run\nmkdir models\ncp a b\n-->\n<!-- doc: run touch x -->\n```sh\nls\n```\n"
    steps = parse(doc)
    assert [(s.kind, s.code, s.line, s.code_line) for s in steps] == [
        ("hidden", "mkdir models\ncp a b\n", 1, 2),
        ("hidden", "touch x\n", 5, 5),
        ("run", "ls\n", 6, 7),
    ]


def test_markers_inside_a_fenced_block_are_text():
    doc = "```markdown\n<!-- doc: bogus -->\n<!-- doc: output -->\n```\n"
    assert parse(doc) == []


@pytest.mark.parametrize(
    "doc, message",
    [
        ("text\n```sh\necho never closed\n", "x.md:2: the fenced block opened here (```) is never closed"),
        ("<!-- doc: output -->\n```text\nhello\n```\n", "x.md:2: `doc: output` follows no executed block"),
        ("<!-- doc: illustrative -->\n```sh\nmake\n```\n<!-- doc: output -->\n```text\nx\n```\n", "x.md:6: `doc: output` follows no executed block"),
        ("```sh\necho\n```\n<!-- doc: output -->\n```text\n\n```\n<!-- doc: output -->\n```text\n\n```\n", "x.md:9: a second `doc: output` for the block at line 1"),
        ("<!-- doc: fails -->\nsome prose\n```sh\nfalse\n```\n", "x.md:1: `doc: fails` is not followed by a fenced block"),
        ("```sh\necho\n```\n<!-- doc: output -->\n", "x.md:4: `doc: output` is not followed by a fenced block"),
        ("<!-- doc: ilustrative -->\n```sh\nx\n```\n", "x.md:1: unknown marker `doc: ilustrative`"),
        ("<!-- doc: run\ntouch x\n", "x.md:1: `<!-- doc: run` is never closed with `-->`"),
        ("<!-- doc: run -->\n", "x.md:1: `<!-- doc: run -->` holds no command"),
        ("<!-- doc: fails -->\n```toml\nx = 1\n```\n", "x.md:2: `doc: fails` marks a ```toml block, which never runs"),
        ("<!-- doc: output\n```text\nx\n```\n", "x.md:1: write the marker alone on its line"),
    ],
)
def test_documents_the_harness_cannot_read_are_errors_naming_the_line(doc, message):
    with pytest.raises(DocError) as error:
        parse(doc, "x.md")
    assert str(error.value).startswith(message)
