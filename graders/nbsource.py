"""Author lesson notebooks as plain text, keep ``solutions/*.ipynb`` the one source.

The committed source of every lesson is ``solutions/<a>/<a>.ipynb``. Editing nbgrader
metadata by hand in JSON is error-prone, so this tool converts a notebook to a readable
text form and back; the text form is a working copy, never committed.

    python -m graders.nbsource export solutions/A/A.ipynb > /tmp/A.txt   # notebook -> text
    python -m graders.nbsource build /tmp/A.txt solutions/A/A.ipynb      # text -> notebook
                                                                        # (executes it and keeps
                                                                        # only NBVAL_CHECK_OUTPUT outputs)
Text form: each cell starts with a header line ``%% <kind> [grade_id] [points=N] [tags=a,b]``:

    %% md                          markdown
    %% code                        ordinary code cell
    %% solution ex1_name           code the student writes (### BEGIN/END SOLUTION inside)
    %% test ex1_name_test 1        autograded test cell worth 1 point (locked;
                                   ### BEGIN/END HIDDEN TESTS inside for hidden lines)
    %% answer q1_name points=1     manually graded free-response markdown cell
    %% code tags=setup             a cell the tests need (imports, a loaded model): see
                                   graders/README.md for the tags the harness reads
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from graders import course

KINDS = ("md", "code", "solution", "test", "answer")
CHECK_OUTPUT = "# NBVAL_CHECK_OUTPUT"


def _meta(kind: str, grade_id: str | None, points: float | None) -> dict:
    if kind in ("md", "code"):
        return {}
    if not grade_id:
        raise ValueError(f"a {kind!r} cell needs a grade_id")
    base = {"grade_id": grade_id, "schema_version": 3, "task": False}
    if kind == "solution":
        return {"nbgrader": {**base, "solution": True, "grade": False, "locked": False}}
    if points is None:
        raise ValueError(f"{kind} cell {grade_id!r} needs points")
    if kind == "test":
        return {"nbgrader": {**base, "solution": False, "grade": True, "locked": True,
                             "points": points}}
    return {"nbgrader": {**base, "solution": True, "grade": True, "locked": False,
                         "points": points}}


def parse(text: str) -> nbformat.NotebookNode:
    """Text form -> notebook (no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                       "name": "python3"},
        "language_info": {"name": "python"},
    }
    header, body = None, []

    def flush():
        if header is None:
            if "".join(body).strip():
                raise ValueError("text before the first '%%' header")
            return
        kind, grade_id, points, tags = header
        src = "".join(body).strip("\n")
        cell = (nbformat.v4.new_markdown_cell(src) if kind in ("md", "answer")
                else nbformat.v4.new_code_cell(src))
        cell.metadata.update(_meta(kind, grade_id, points))
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)

    for line in text.splitlines(keepends=True):
        if line.startswith("%% "):
            flush()
            parts = line[3:].split()
            kind = parts[0]
            if kind not in KINDS:
                raise ValueError(f"unknown cell kind {kind!r} in {line!r}; use one of {KINDS}")
            grade_id, points, tags = None, None, []
            for part in parts[1:]:
                if part.startswith("points="):
                    points = float(part.removeprefix("points="))
                elif part.startswith("tags="):
                    tags = [t for t in part.removeprefix("tags=").split(",") if t]
                elif grade_id is None:
                    grade_id = part
                else:
                    points = float(part)
            header, body = (kind, grade_id, points, tags), []
        else:
            body.append(line)
    flush()
    for i, cell in enumerate(nb.cells):  # stable ids keep the release byte-identical
        cell["id"] = f"cell-{i:03d}"
    return nb


def export(nb: nbformat.NotebookNode) -> str:
    """Notebook -> text form (outputs dropped)."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            head = f"answer {meta['grade_id']} points={meta['points']:g}"
        elif meta.get("grade"):
            head = f"test {meta['grade_id']} points={meta['points']:g}"
        elif meta.get("solution"):
            head = f"solution {meta['grade_id']}"
        else:
            head = "md" if cell.cell_type == "markdown" else "code"
        tags = cell.metadata.get("tags") or []
        if tags:
            head += " tags=" + ",".join(tags)
        out.append(f"%% {head}\n{cell.source}\n\n")
    return "".join(out)


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> None:
    """Run the notebook in place (instructor environment: ``graders`` importable)."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute(env=course.instructor_env())


def keep_checked_outputs(nb: nbformat.NotebookNode) -> None:
    """Keep outputs only where nbval compares them; everything else is regenerated."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if CHECK_OUTPUT not in cell.source:
            cell.outputs = []
            cell.execution_count = None
        else:
            for out in cell.outputs:
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    raise ValueError(f"{cell['id']}: a checked cell writes to stderr")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="notebook -> text form on stdout")
    e.add_argument("notebook")
    b = sub.add_parser("build", help="text form -> executed notebook")
    b.add_argument("text")
    b.add_argument("notebook")
    b.add_argument("--no-execute", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        sys.stdout.write(export(nbformat.read(args.notebook, as_version=4)))
        return 0
    nb = parse(Path(args.text).read_text())
    target = Path(args.notebook)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not args.no_execute:
        execute(nb, target.parent)
    keep_checked_outputs(nb)
    nbformat.validate(nb)
    nbformat.write(nb, str(target))
    print(f"wrote {target} ({len(nb.cells)} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
