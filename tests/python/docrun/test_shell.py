"""Splitting a shell block into top-level commands, and what the harness wraps around them."""
from docrun.shell import _simple, commands, script


def test_commands_end_where_bash_says_they_end():
    code = (
        "# a comment\n"
        "for who in a b; do\n  echo $who\ndone\n"
        "cat > f <<EOF\nx &\n\\\nEOF\n"
        "curl -d '{\"a\":\n 1}' x\n"
        "weir serve \\\n  --http-port 8080 &   # in the background\n"
        "a && b\n"
    )
    found = [(c.offset, c.text, c.background) for c in commands(code)]
    assert found == [
        (1, "for who in a b; do\n  echo $who\ndone", False),
        (4, "cat > f <<EOF\nx &\n\\\nEOF", False),
        (8, "curl -d '{\"a\":\n 1}' x", False),
        (10, "weir serve \\\n  --http-port 8080", True),
        (12, "a && b", False),
    ]


def test_only_a_final_single_ampersand_means_background():
    assert [c.background for c in commands("a &&\n b\nx 2>&1\ny |& z\nserver&\n")] == [False, False, False, True]


def test_an_unfinished_command_still_runs_so_bash_reports_it():
    assert [c.text for c in commands("echo ok\necho 'unclosed\n")] == ["echo ok", "echo 'unclosed"]


def test_simple_commands_start_without_a_wrapper():
    assert _simple("weir serve --model x=\"a;b\" \\\n  --http-port 1")
    assert not _simple("a | b")
    assert not _simple("a; b")
    assert not _simple("a\nb")


def test_script_checks_every_command_and_waits_for_background_servers():
    text = script("weir registry &\nA=1 && false\n", 10, "/s", "doc.md")
    assert text == (
        "__doc_at 10\nweir registry >'/s/bg-doc.md-L10.log' 2>&1 &\n__doc_bg $! '/s/bg-doc.md-L10.log'\n__doc_check $? 10\n"
        "__doc_at 11\nA=1 && false\n__doc_check $? 11\n"
    )
    wrapped = script("a | b &\n", 1, "/s", "d")
    assert wrapped.startswith("__doc_at 1\n{ a | b\n} >'/s/bg-d-L1.log' 2>&1 &\n")
