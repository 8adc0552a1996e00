"""Build student submissions from the source and the release (for tests and demos).

A submission is the released notebook with some solution cells filled in:

* the *reference* submission fills every solution cell with the source's solution;
* a *known-wrong* submission applies :class:`Mutant` edits to the reference solution of one
  or more exercises (one misconception each, declared in ``graders/mutants/<lesson>.py``);
* the *blank* submission is the release untouched.

Exercises are keyed by the first token of a grade id (``ex3_adagroupnorm`` -> ``ex3``), the
same key the grade export uses.
"""
from __future__ import annotations

import copy
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)[ \t]*\n?", re.M)


@dataclass(frozen=True)
class Mutant:
    """A known-wrong answer: textual edits of one reference solution cell.

    ``cell``: grade id of the solution cell; ``edits``: (old, new) pairs, each ``old`` must
    occur in the reference solution; ``message``: a phrase the failing test must show, so the
    misconception is named to the student.
    """
    name: str
    cell: str
    edits: tuple[tuple[str, str], ...]
    message: str

    @property
    def exercise(self) -> str:
        return exercise_of(self.cell)


@dataclass
class Lesson:
    assignment: str
    mutants: list[Mutant] = field(default_factory=list)

    @property
    def source(self) -> Path:
        return ROOT / "solutions" / self.assignment / f"{self.assignment}.ipynb"

    @property
    def release(self) -> Path:
        return ROOT / "notebooks" / self.assignment / f"{self.assignment}.ipynb"


def exercise_of(grade_id: str) -> str:
    return grade_id.split("_", 1)[0]


def load_lesson(module: str) -> Lesson:
    """``graders/mutants/<module>.py`` defines ASSIGNMENT and MUTANTS."""
    mod = importlib.import_module(f"graders.mutants.{module}")
    return Lesson(mod.ASSIGNMENT, list(mod.MUTANTS))


def strip_markers(source: str) -> str:
    return _MARKER.sub("", source)


def reference_answers(source_nb) -> dict[str, str]:
    """grade_id -> reference text for every cell the student fills in."""
    answers = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers[meta["grade_id"]] = strip_markers(cell.source)
    return answers


def apply(answers: dict[str, str], mutants: list[Mutant]) -> dict[str, str]:
    out = dict(answers)
    for m in mutants:
        code = out[m.cell]
        for old, new in m.edits:
            if old not in code:
                raise ValueError(f"mutant {m.name}: {old!r} not found in the reference solution of "
                                 f"{m.cell}; update graders/mutants after editing the solution")
            code = code.replace(old, new)
        out[m.cell] = code
    return out


def fill(release_nb, answers: dict[str, str]):
    """Copy of the release with the given solution cells replaced."""
    nb = copy.deepcopy(release_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def rotation(mutants: list[Mutant]) -> list[list[Mutant]]:
    """Spread mutants over few submissions, one per exercise per submission, so that every
    submission also leaves at least one exercise correct (it must keep those points)."""
    by_ex: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_ex.setdefault(m.exercise, []).append(m)
    exercises = sorted(by_ex)
    n = max(len(v) for v in by_ex.values()) + 1
    subs: list[list[Mutant]] = [[] for _ in range(n)]
    for i, ex in enumerate(exercises):
        for j, m in enumerate(by_ex[ex]):
            subs[(i + j) % n].append(m)
    return [s for s in subs if s]


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


def write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def copy_course(dest: Path) -> Path:
    """A throw-away copy of the course (sources, release, graders, data link) with an empty
    grading workspace, for round-trip tests and benchmarks."""
    import shutil

    for name in ("solutions", "notebooks"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copytree(ROOT / "graders", dest / "graders",
                    ignore=shutil.ignore_patterns("workspace", "__pycache__"))
    if (ROOT / "data").exists():
        (dest / "data").symlink_to(ROOT / "data")
    return dest
