"""The "docs that run" harness (issue 17): every ```sh, ```bash and ```python block of README.md
and docs/*.md runs in document order against real processes on loopback, so a document can no
longer drift from the binary. tests/python/test_docs.py runs one test per document; the
conventions for writing documents are in docs/contributing.md."""
from .markdown import DocError, Step, parse
from .expect import match_output
from .ports import PortMap
from .session import DocFailure, run_document

__all__ = ["DocError", "Step", "parse", "match_output", "PortMap", "run_document", "DocFailure"]
