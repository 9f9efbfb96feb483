"""Docs that run (issue 17): every ```sh, ```bash and ```python block of README.md, docs/*.md and
the chart's README runs in document order against real processes on loopback, one test per
document, so a document can no longer drift from the binary. Conventions: docs/contributing.md.
One document: `.venv/bin/python -m pytest -q tests/python/test_docs.py -k registry`."""
import pathlib

import pytest

import docrun

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "helm" / "weir" / "README.md"]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_document_runs_as_written(doc, tmp_path):
    problem = None
    try:
        docrun.run_document(doc, tmp_path, ROOT)
    except (docrun.DocError, docrun.DocFailure) as failure:
        problem = str(failure)
    if problem:  # outside the except: the report alone, without a chained traceback
        pytest.fail(problem, pytrace=False)
