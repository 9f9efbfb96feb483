"""Literal ports in a document mapped to free loopback ports, so documents keep the defaults a
reader types (5000, 8080, …) while tests never collide with each other or with whatever else
runs on the machine. One map per document, applied to its commands and its expected output
alike, so `:5000` in a command and in the output it prints stay the same port."""
import pathlib
import random
import re
import socket

# weir's defaults and the conventional metrics port: mapped wherever they appear as a number.
WELL_KNOWN = (5000, 8000, 8001, 8080, 9090)
# Defaults weir uses without a flag (the `weir` shim in session.py hands them the mapped ports).
DEFAULTS = (*WELL_KNOWN, 9102)

# host:8080, http://h:5000/x, [::1]:8080; not JSON's "key":1234 (a quote before the colon).
_AFTER_COLON = re.compile(r"(?<=[\w\].-]:)(\d{4,5})(?!\w|\.\d)")
_AFTER_FLAG = re.compile(r"(?<=-port[ =])(\d{4,5})(?!\w|\.\d)")  # --http-port 8080, --admin-port=8001
_WELL_KNOWN = re.compile(r"(?<![\w.])(%s)(?!\w|\.\d)" % "|".join(map(str, WELL_KNOWN)))


def _ephemeral_start():
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port nothing listens on right now, below the kernel's ephemeral range: between this
    choice and the server's bind, no outgoing connection (which takes ephemeral ports) and no
    other test's port-0 listener can take it."""
    low, high = 20000, _ephemeral_start()
    for _ in range(200):
        port = random.randrange(low, high) if high > low else 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port between {low} and {high}")


def literal_ports(text):
    """The spans (start, end, port) of every port the rules above find in `text`."""
    found = {}
    for pattern in (_AFTER_COLON, _AFTER_FLAG, _WELL_KNOWN):
        for hit in pattern.finditer(text):
            port = int(hit.group(1))
            if 1024 <= port <= 65535:
                found[hit.start(1)] = (hit.start(1), hit.end(1), port)
    return sorted(found.values())


class PortMap:
    """Literal port → free port, allocated on first sight and kept for the whole document."""

    def __init__(self, allocate=free_port):
        self._allocate = allocate
        self.ports = {}

    def port(self, literal):
        if literal not in self.ports:
            taken = set(self.ports.values()) | set(self.ports) | {literal}
            for _ in range(100):
                candidate = self._allocate()
                if candidate not in taken:
                    break
            else:
                raise RuntimeError(f"no free port distinct from {sorted(taken)}")
            self.ports[literal] = candidate
        return self.ports[literal]

    def apply(self, text):
        """`text` with every literal port replaced by its mapped port."""
        pieces, at = [], 0
        for start, end, literal in literal_ports(text):
            pieces += [text[at:start], str(self.port(literal))]
            at = end
        return "".join(pieces) + text[at:]

    def describe(self):
        return ", ".join(f"{a}→{b}" for a, b in sorted(self.ports.items()))
