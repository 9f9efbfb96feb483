"""Whole documents through a real bash session: state carries between blocks, failures name the
line, command, status and output, hung blocks and silent servers are bounded, and every process a
document started is gone afterwards, whether it passed or not."""
import os
import pathlib
import time

import pytest

from docrun import DocFailure, run_document, session

ROOT = pathlib.Path(__file__).resolve().parents[3]
SERVER = "python -c 'import time; print(\"fake listening on x\", flush=True); time.sleep(600)'"


def run(tmp_path, text):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    run_document(doc, tmp_path / "run", ROOT)


def failure(tmp_path, text):
    with pytest.raises(DocFailure) as error:
        run(tmp_path, text)
    return str(error.value).replace(f"{tmp_path}/", "")


def gone(pid_file):
    pid = int(pid_file.read_text())
    for _ in range(100):
        try:
            state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_state_carries_from_block_to_block_and_outputs_match(tmp_path):
    run(tmp_path, (
        "<!-- doc: run\nmkdir sub\n-->\n"
        "```sh\ncd sub\nX=5\necho \"port :8080 $X\" > f\n```\n"
        "```python\nimport os\nprint(open('f').read().strip(), os.path.basename(os.getcwd()))\n```\n"
        "<!-- doc: output -->\n```text\nport :8080 5 sub\n```\n"
        "<!-- doc: fails -->\n```sh\necho before\nfalse\necho never\n```\n"
        "<!-- doc: output -->\n```text\nbefore\n```\n"
        "```sh\ncommand -v weir python | sed 's|.*/||'\necho \"$WEIR_CHECKOUT\"\n```\n"
        "<!-- doc: output -->\n```text\nweir\npython\n" + str(ROOT) + "\n```\n"
    ))


def test_a_failing_command_names_the_line_command_status_and_output(tmp_path):
    report = failure(tmp_path, "text\n\n```sh\necho one\necho two && ls /no/such/dir && echo three\necho four\n```\n")
    assert report.startswith("doc.md:5: exited with status 2")
    assert "in the ```sh block at doc.md:3" in report
    assert "$ echo two && ls /no/such/dir && echo three" in report
    assert "one\n    two\n    ls: cannot access '/no/such/dir'" in report


def test_a_differing_output_is_a_failure(tmp_path):
    report = failure(tmp_path, "```sh\necho 127.0.0.1:5000\n```\n<!-- doc: output -->\n```text\n127.0.0.1:5001\n```\n")
    assert report.startswith("doc.md:5: the output of the block at line 1 differs from the document")
    assert "ports: 5000→" in report


def test_a_block_marked_fails_must_fail(tmp_path):
    report = failure(tmp_path, "<!-- doc: fails -->\n```sh\ntrue\n```\n")
    assert "exited with status 0, but the document marks it `doc: fails`" in report


def test_background_servers_are_waited_for_and_stopped_at_the_end(tmp_path):
    pid_file = tmp_path / "pid"
    run(tmp_path, f"```sh\n{SERVER} &\necho $! > {pid_file}\n```\n<!-- doc: output -->\n```text\nfake listening on x\n```\n")
    assert gone(pid_file)


def test_a_background_command_that_exits_first_is_named_with_its_log(tmp_path):
    report = failure(tmp_path, "```sh\necho cannot bind; exit 3 &\n```\n")
    assert report.startswith("doc.md:2: exited with status 3 before printing 'listening on'")
    assert "cannot bind" in report


def test_a_silent_server_and_a_hung_block_are_bounded_and_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(session, "BACKGROUND_TIMEOUT", 1)
    pid_file = tmp_path / "pid"
    report = failure(tmp_path, f"```sh\nsh -c 'echo $$ > {pid_file}; echo starting; exec sleep 600' &\n```\n")
    assert "did not print 'listening on' within 1 s" in report and "starting" in report
    assert gone(pid_file)
    monkeypatch.setattr(session, "BLOCK_TIMEOUT", 1)
    (tmp_path / "again").mkdir()
    report = failure(tmp_path / "again", f"```sh\necho $$ > {pid_file}\nsleep 600\n```\n")
    assert report.startswith("doc.md:3: did not finish within 1 s (stopped; a server?") and "$ sleep 600" in report
    assert gone(pid_file)


def test_processes_that_leave_the_group_are_stopped_too(tmp_path):
    pid_file = tmp_path / "pid"
    failure(tmp_path, f"```sh\nsetsid -f sh -c 'echo $$ > {pid_file}; exec sleep 600' > /dev/null\nwhile [ ! -s {pid_file} ]; do sleep 0.1; done\nfalse\n```\n")
    assert os.path.exists(pid_file) and gone(pid_file)


def test_weir_on_its_default_port_gets_the_mapped_port(tmp_path):
    run(tmp_path, (
        "```sh\nweir registry &\ncurl -s -w '\\n' localhost:5000/health\nweir models list\n```\n"
        "<!-- doc: output -->\n```text\nweir registry listening on http://127.0.0.1:5000\nOK\nNAME...\n```\n"
    ))
