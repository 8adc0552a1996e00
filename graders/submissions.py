"""Build student submissions from the source and the release (for tests, benchmarks, demos).

A submission is the released notebook with some solution cells filled in:

* the *reference* submission fills every solution cell with the source's solution;
* a *known-wrong* submission applies :class:`Mutant` edits to the reference solution of one
  or more exercise parts (one misconception each, declared in ``graders/mutants/<key>.py``);
* the *blank* submission is the release untouched.

A known-wrong answer belongs to one exercise *part* (``course.part_of``: ``ex2b``); it must
lose that part's points while every other part keeps its own.

The harness reads cell tags (see graders/README.md): ``setup`` marks the code cells the
tests need besides the solution and test cells (imports, a loaded model).
"""
from __future__ import annotations

import contextlib
import copy
import io
import re
import shutil
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from graders import course

_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)[ \t]*\n?", re.M)
SETUP_TAG = "setup"


@dataclass(frozen=True)
class Mutant:
    """A known-wrong answer: textual edits of one reference solution cell.

    ``cell``: grade id of the solution cell; ``edits``: (old, new) pairs; each ``old`` must
    occur in the reference solution (runs of spaces and tabs may differ); ``message``: a
    phrase the failing test must show, so the misconception is named to the student.
    """
    name: str
    cell: str
    edits: tuple[tuple[str, str], ...]
    message: str

    @property
    def part(self) -> str:
        return course.part_of(self.cell)

    @property
    def exercise(self) -> str:
        return course.exercise_of(self.cell)


@dataclass
class Lesson:
    assignment: str
    mutants: list[Mutant] = field(default_factory=list)

    @property
    def source(self) -> Path:
        return course.lesson(self.assignment).source

    @property
    def release(self) -> Path:
        return course.lesson(self.assignment).release


def load_lesson(name: str) -> Lesson:
    """The known-wrong answers of a lesson (by key ``l2_conditioning`` or assignment id)."""
    mod = course.lesson(name).mutants()
    return Lesson(mod.ASSIGNMENT, list(mod.MUTANTS))


def strip_markers(source: str) -> str:
    return _MARKER.sub("", source)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_solution(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution")) and cell.cell_type == "code"


def is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution") and cell.cell_type == "code"


def is_setup(cell) -> bool:
    return cell.cell_type == "code" and SETUP_TAG in (cell.metadata.get("tags") or [])


def reference_answers(source_nb) -> dict[str, str]:
    """grade_id -> reference text for every cell the student fills in (code and answers)."""
    return {grade_id(c): strip_markers(c.source) for c in source_nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def _find(code: str, old: str) -> re.Match | None:
    """``old`` in ``code``, tolerating different runs of spaces and tabs."""
    pattern = "".join(r"[ \t]+" if part.isspace() and "\n" not in part else re.escape(part)
                      for part in re.split(r"([ \t]+)", old) if part)
    return re.search(pattern, code)


def apply(answers: dict[str, str], mutants: list[Mutant]) -> dict[str, str]:
    out = dict(answers)
    for m in mutants:
        code = out[m.cell]
        for old, new in m.edits:
            match = _find(code, old)
            if match is None:
                raise ValueError(f"mutant {m.name}: {old!r} not found in the reference solution of "
                                 f"{m.cell}; update graders/mutants after editing the solution")
            code = code[:match.start()] + new + code[match.end():]
        if code == out[m.cell]:
            raise ValueError(f"mutant {m.name} does not change {m.cell}")
        out[m.cell] = code
    return out


def fill(release_nb, answers: dict[str, str]):
    """Copy of the release with the given solution cells replaced."""
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def insert_after_setup(nb, cell) -> None:
    """Insert ``cell`` right after the first ``setup`` cell (adversarial submissions)."""
    first = next((i for i, c in enumerate(nb.cells) if is_setup(c)), None)
    if first is None:
        raise ValueError("the notebook has no cell tagged 'setup' (see graders/README.md)")
    nb.cells.insert(first + 1, cell)


def rotation(mutants: list[Mutant]) -> list[list[Mutant]]:
    """Spread mutants over few submissions, one per exercise part per submission, so that
    every submission also leaves at least one part correct (it must keep those points)."""
    by_part: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_part.setdefault(m.part, []).append(m)
    parts = sorted(by_part)
    n = max(len(v) for v in by_part.values()) + 1
    subs: list[list[Mutant]] = [[] for _ in range(n)]
    for i, part in enumerate(parts):
        for j, m in enumerate(by_part[part]):
            subs[(i + j) % n].append(m)
    return [s for s in subs if s]


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


def write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def copy_course(dest: Path) -> Path:
    """A throw-away copy of the course (sources, release, graders, data and package links)
    with an empty grading workspace, for round-trip tests and benchmarks."""
    for name in ("solutions", "notebooks"):
        shutil.copytree(course.ROOT / name, dest / name)
    shutil.copytree(course.GRADERS, dest / "graders",
                    ignore=shutil.ignore_patterns("workspace", "__pycache__"))
    for name in ("data", "sdcourse"):
        (dest / name).symlink_to(course.ROOT / name)
    return dest


# --------------------------------------------------------------------------- in-process runs

def gradebook_url(course_copy: Path) -> str:
    """The SQLite gradebook of a course copy (what ``course.db_url()`` is for the course itself)."""
    return "sqlite:///" + str(course_copy / "graders" / "workspace" / "gradebook.db")


def cell_scores(course_copy: Path, aid: str, student: str) -> dict[str, tuple[float, float]] | None:
    """{grade id: (score, max score)} of every graded code cell of ``student``'s ``aid`` in the
    SQLite gradebook of a course copy (nbgrader's ``Gradebook``; the CSV export has no per-cell
    scores); None when the gradebook has no such submission."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook_url(course_copy)) as gb:
        try:
            sub = gb.find_submission(aid, student)
        except MissingEntry:
            return None
        return {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades
                if g.cell.cell_type == "code"}


def lesson_cells(key: str):
    """[(kind, grade_id, source)] of the setup, solution and test code cells, in order."""
    nb = read(course.lesson(key).source)
    out = []
    for cell in nb.cells:
        if is_setup(cell):
            out.append(("setup", None, cell.source))
        elif is_solution(cell):
            out.append(("solution", grade_id(cell), strip_markers(cell.source)))
        elif is_test(cell):
            out.append(("test", grade_id(cell), strip_markers(cell.source)))
    return out


@contextlib.contextmanager
def _as_main(module: types.ModuleType):
    old = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        yield
    finally:
        sys.modules["__main__"] = old


def run_in_process(key: str, answers: dict[str, str] | None = None) -> dict[str, str | None]:
    """Execute the lesson with ``answers`` replacing solution cells; return
    {test grade_id: None if it passed else the error message}."""
    main = types.ModuleType("__main__")
    results: dict[str, str | None] = {}
    with _as_main(main), contextlib.redirect_stdout(io.StringIO()):
        import matplotlib

        matplotlib.use("Agg")
        for kind, gid, code in lesson_cells(key):
            if kind == "solution" and answers is not None:
                code = answers.get(gid, code)
            try:
                exec(compile(code, f"<{gid or 'setup'}>", "exec"), main.__dict__)
                if kind == "test":
                    results[gid] = None
            except Exception as exc:  # noqa: BLE001 - any failure is a lost point
                if kind == "setup":
                    raise
                if kind == "test":
                    results[gid] = f"{type(exc).__name__}: {exc}"
        import matplotlib.pyplot as plt

        plt.close("all")
    return results
