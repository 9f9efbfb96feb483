"""A summary of which documents run, for people fixing several at once:
`.venv/bin/python tests/python/docrun [DOC…]` (default: every document test_docs.py runs) prints
one Markdown section per document with the first lines of its failure."""
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from docrun import DocError, DocFailure, parse, run_document  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _counts(doc):
    """How much of the document runs: shown blocks, hidden fixtures, compared outputs, and
    the blocks marked illustrative."""
    text = doc.read_text()
    try:
        steps = parse(text, doc.name)
    except DocError:
        return "unreadable"
    kinds = [step.kind for step in steps]
    illustrative = text.count("<!-- doc: illustrative -->")
    return f"{kinds.count('run')} blocks run, {kinds.count('hidden')} hidden, {kinds.count('output')} outputs compared, {illustrative} illustrative"


def main(arguments):
    docs = [pathlib.Path(a).resolve() for a in arguments] or [
        ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "helm" / "weir" / "README.md"]
    failed = 0
    for doc in docs:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="docrun-") as tmp:
            try:
                run_document(doc, pathlib.Path(tmp), ROOT)
                verdict, detail = "runs", ""
            except (DocError, DocFailure) as failure:
                failed += 1
                lines = str(failure).split("\n")
                verdict = "FAILS"
                detail = "\n".join("    " + line for line in lines[:4] + [line for line in lines[4:] if "error" in line.lower()][:4])
        print(f"- `{doc.relative_to(ROOT)}`: {verdict} ({time.monotonic() - started:.0f} s; {_counts(doc)})")
        if detail:
            print(detail)
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
