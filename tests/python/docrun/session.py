"""Runs one document: its blocks in order in ONE bash session (variables, `cd` and files carry
from block to block, as in a reader's terminal) inside an empty folder, with the document's
literal ports mapped to free ones, every block bounded in time, and every process the document
started stopped at the end — the whole process group and anything carrying the session's mark in
its environment (servers that start children of their own, like `weir up`) — even when a block
fails or hangs."""
import os
import pathlib
import select
import signal
import subprocess
import time
import uuid

from . import expect, markdown, ports, shell

BLOCK_TIMEOUT = float(os.environ.get("DOCRUN_BLOCK_TIMEOUT", "300"))
# How long a line ending in `&` may take to say it listens (inside the block's own limit).
BACKGROUND_TIMEOUT = float(os.environ.get("DOCRUN_BACKGROUND_TIMEOUT", "180"))
TAIL = 40

# Sourced first in every session. `__doc_at` notes which command runs (for the report when a
# block fails or hangs), `__doc_check` fails the block on a non-zero status that `set -e` lets
# through (`a && b` when `a` fails), `__doc_bg` waits for a background server to be usable:
# its `listening on` line, and for `weir serve` also its `ready` line (models loaded).
PRELUDE = r"""
__doc_at() { printf '%s\n' "$1" > "$__DOC_STATE/at"; }
__doc_fail() { printf '%s\n%s\n' "$1" "$2" > "$__DOC_STATE/err"; }
trap '__doc_fail $? "failed: $BASH_COMMAND"' ERR
__doc_check() {
  if [ "$1" -ne 0 ]; then __doc_fail "$1" "exited with status $1"; exit "$1"; fi
}
# `-s`: the background command's shell may not have opened its log yet on the first look.
__doc_ready_line() {
  if grep -qs 'weir serve listening on' "$1"; then
    grep -ns -m1 'weir serve ready' "$1"
  else
    grep -ns -m1 -E 'listening on|weir up ready' "$1"
  fi
}
__doc_awaited() {
  if grep -qs 'weir serve listening on' "$1"; then echo 'weir serve ready'; else echo 'listening on'; fi
}
__doc_bg() {
  local pid=$1 log=$2 ticks=$(( __DOC_BG_TIMEOUT * 10 )) i found status
  for (( i = 0; i < ticks; i++ )); do
    if found=$(__doc_ready_line "$log"); then
      head -n "${found%%:*}" "$log"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" && status=0 || status=$?
      cat "$log"
      __doc_fail "$status" "exited with status $status before printing '$(__doc_awaited "$log")'"
      exit $(( status ? status : 1 ))
    fi
    sleep 0.1
  done
  cat "$log"
  __doc_fail 124 "did not print '$(__doc_awaited "$log")' within $__DOC_BG_TIMEOUT s"
  exit 124
}
"""

# Hands weir's defaults (a command without its port flag) the ports the document's literal
# defaults map to, through the environment variables weir reads; an explicit flag or variable
# still wins. Without it `weir registry` would really bind 5000 while `http://127.0.0.1:5000`
# in the next command pointed at the mapped port.
SHIM = r"""#!/usr/bin/env bash
for sub in "$@"; do
  case "$sub" in
    serve) export WEIR_HTTP_PORT="${WEIR_HTTP_PORT-@8080@}"; break ;;
    registry) export WEIR_HTTP_PORT="${WEIR_HTTP_PORT-@5000@}"; break ;;
    route) export WEIR_HTTP_PORT="${WEIR_HTTP_PORT-@8000@}" WEIR_ADMIN_PORT="${WEIR_ADMIN_PORT-@8001@}"; break ;;
    autoscale) export WEIR_HTTP_PORT="${WEIR_HTTP_PORT-@9102@}"; break ;;
    up) export WEIR_ROUTER_PORT="${WEIR_ROUTER_PORT-@8000@}" WEIR_ROUTER_ADMIN_PORT="${WEIR_ROUTER_ADMIN_PORT-@8001@}" \
          WEIR_REGISTRY_PORT="${WEIR_REGISTRY_PORT-@5000@}"; break ;;
    canary) export WEIR_ROUTER="${WEIR_ROUTER-http://127.0.0.1:@8001@}"; break ;;
    models|runs)
      if [ -z "${WEIR_REGISTRY-}${WEIR_TRACKING_URI-}${MLFLOW_TRACKING_URI-}" ]; then
        export WEIR_REGISTRY=http://127.0.0.1:@5000@ WEIR_TRACKING_URI=http://127.0.0.1:@5000@
      fi
      break ;;
    -*) ;;
    *) break ;;
  esac
done
exec @WEIR@ "$@"
"""


class DocFailure(AssertionError):
    """A document that does not run as written; the message says where and why."""


def _tail(path, lines=TAIL):
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return "(nothing)"
    kept = expect.ANSI.sub("", text).rstrip("\n").split("\n")[-lines:]
    return "\n".join("    " + line for line in kept) if text.strip() else "    (nothing)"


def _session_processes(mark, group):
    """Pids of live processes in `group` or whose environment holds `mark`."""
    found = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _, pgid = stat.rsplit(")", 1)[1].split()[:3]
            if state == "Z":
                continue
            if int(pgid) == group or mark in (entry / "environ").read_bytes():
                found.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    found.discard(os.getpid())
    return found


class Session:
    """One bash process reading the document's blocks from a pipe, each `source`d with its
    output in a file; it reports `__DOC_DONE__ STATUS` on its own stdout after each block."""

    def __init__(self, work, state, env):
        self.state = state
        self.mark = f"DOCRUN_SESSION={uuid.uuid4().hex}"
        env = {**env, "DOCRUN_SESSION": self.mark.split("=", 1)[1]}
        self.log = open(state / "session.log", "wb")
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, cwd=work, env=env, start_new_session=True,
        )
        self._pending = b""
        self._send(f"__DOC_STATE={shell._quote(str(state))}\n__DOC_BG_TIMEOUT={int(BACKGROUND_TIMEOUT)}\n{PRELUDE}\n")

    def _send(self, text):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def run(self, script_path, out_path, fails):
        """(status, finished): the block's exit status, and False when it hit BLOCK_TIMEOUT.
        A failing block that is not expected to fail ends the shell (set -e)."""
        for name in ("err", "at"):
            (self.state / name).unlink(missing_ok=True)
        script, out = shell._quote(str(script_path)), shell._quote(str(out_path))
        if fails:
            line = f"( set -eEo pipefail; source {script} ) > {out} 2>&1 < /dev/null; echo \"__DOC_DONE__ $?\"\n"
        else:
            line = f"set -eEo pipefail; source {script} > {out} 2>&1 < /dev/null; set +eE +o pipefail; echo __DOC_DONE__ 0\n"
        try:
            self._send(line)
        except BrokenPipeError:
            return self.process.wait(), True
        deadline = time.monotonic() + BLOCK_TIMEOUT
        descriptor = self.process.stdout.fileno()
        while True:
            if b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                if line.startswith(b"__DOC_DONE__ "):
                    return int(line.split()[1]), True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None, False
            # The shell ends when a block fails under set -e. Its end is watched, not read as
            # the pipe's end: a background server's forked parent may still hold the pipe.
            ready, _, _ = select.select([descriptor], [], [], min(left, 0.2))
            chunk = os.read(descriptor, 4096) if ready else b""
            self._pending += chunk
            if not chunk and self.process.poll() is not None:
                return self.process.returncode, True

    def stop(self):
        """Stops everything the document started: TERM, up to 10 s to finish, then KILL."""
        group = self.process.pid
        try:
            self.process.stdin.close()
        except OSError:
            pass
        mark = self.mark.encode()
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            alive = _session_processes(mark, group)
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                self.process.poll()
                time.sleep(0.05)
                alive = _session_processes(mark, group)
            if not alive:
                break
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


def _environment(root, state, port_map):
    """The reader's environment after `make setup`: the built weir, then the project's venv."""
    binary = pathlib.Path(os.environ.get("WEIR_BIN", root / "target" / "debug" / "weir"))
    if not binary.is_file():
        raise DocFailure(f"{binary} is missing: run `cargo build --bin weir` (make test does)")
    shim_dir = state / "bin"
    shim_dir.mkdir()
    text = SHIM.replace("@WEIR@", shell._quote(str(binary)))
    for default in ports.DEFAULTS:
        text = text.replace(f"@{default}@", str(port_map.port(default)))
    (shim_dir / "weir").write_text(text)
    (shim_dir / "weir").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "MLFLOW_", "DOCRUN_"))}
    path = [str(shim_dir), str(binary.parent), str(root / ".venv" / "bin"), env.get("PATH", "/usr/bin:/bin")]
    # Python's output reaches the log in the order a terminal would show it.
    env.update(PATH=":".join(path), WEIR_CHECKOUT=str(root), PYTHONUNBUFFERED="1")
    return env


def run_document(doc, tmp, root):
    """Runs every block of `doc` (a path); raises DocFailure naming the first that fails."""
    name = str(pathlib.Path(doc).resolve().relative_to(root)) if pathlib.Path(doc).resolve().is_relative_to(root) else str(doc)
    steps = markdown.parse(pathlib.Path(doc).read_text(), name)
    if not any(step.kind in ("run", "hidden") for step in steps):
        return
    work, state = pathlib.Path(tmp) / "work", pathlib.Path(tmp) / "state"
    work.mkdir(parents=True)
    state.mkdir(parents=True)
    port_map = ports.PortMap()
    env = _environment(root, state, port_map)
    label = name.replace("/", "_")
    session = Session(work, state, env)
    outputs = {}
    try:
        for index, step in enumerate(steps):
            if step.kind == "output":
                problem = expect.match_output(port_map.apply(step.code), outputs[step.target].read_text(errors="replace"))
                if problem:
                    ran = steps[step.target]
                    raise DocFailure(
                        f"{name}:{step.line}: the output of the block at line {ran.line} differs from the document: "
                        f"{problem}\n  ports: {port_map.describe()}")
                continue
            code = port_map.apply(step.code)
            if step.lang == "python":
                program = state / f"{label}-L{step.code_line}.py"
                program.write_text(code)
                code = f"python {shell._quote(str(program))}\n"
            script = state / f"block-{index}.sh"
            script.write_text(shell.script(code, step.code_line, state, label))
            outputs[index] = out = state / f"out-{index}.txt"
            status, finished = session.run(script, out, step.fails)
            if finished and step.fails and status != 0:
                continue
            if finished and status == 0 and not step.fails:
                continue
            raise DocFailure(_report(name, step, status, finished, state, out, port_map))
    finally:
        session.stop()


def _report(name, step, status, finished, state, out, port_map):
    """Where a block failed: its line, the command, the status, the output's and servers' tails."""
    lines = step.code.rstrip("\n").split("\n")
    at = step.code_line
    try:
        at = int((state / "at").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    reason = f"exited with status {status}"
    try:
        recorded = (state / "err").read_text().split("\n", 1)
        message = recorded[1].strip()
        reason = message if message.startswith("exited") else f"{message} (exit status {recorded[0]})"
    except (OSError, IndexError):
        pass
    what = "hidden set-up (<!-- doc: run -->)" if step.kind == "hidden" else f"```{step.lang} block"
    if step.lang == "python":
        command = f"the python block at line {step.line}"
    else:
        offset = max(0, at - step.code_line)
        shown = next((c.text for c in shell.commands(step.code) if c.offset == offset), "\n".join(lines[offset:offset + 1]))
        command = "\n".join(("    $ " if i == 0 else "      ") + line for i, line in enumerate(shown.split("\n")[:8]))
    if not finished:
        reason = f"did not finish within {BLOCK_TIMEOUT:g} s (stopped; a server? end its line with `&`)"
    elif step.fails and status == 0:
        reason = "exited with status 0, but the document marks it `doc: fails`"
    parts = [
        f"{name}:{at}: {reason}",
        f"  in the {what} at {name}:{step.line}",
        "  command:" if step.lang != "python" else f"  command: {command}",
    ]
    if step.lang != "python":
        parts.append(command)
    parts += ["  output (tail):", _tail(out)]
    for log in sorted(state.glob("bg-*.log")):
        parts += [f"  background {log.name} (tail):", _tail(log, 15)]
    parts.append(f"  ports: {port_map.describe()}")
    return "\n".join(parts)
