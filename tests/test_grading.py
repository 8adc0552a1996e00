"""nbgrader round trip in a temporary copy of the course, for every lesson with mutants.

* notebooks/ is exactly what ``make assignments`` generates from solutions/;
* the reference solution scores full marks on every autograded cell;
* the untouched release scores 0 on every autograded cell;
* known-wrong answers (graders/mutants) lose their exercise's points while the other
  exercises keep theirs (several mutants share one submission, one per exercise);
* adversarial submissions: a kernel crash and a malformed notebook are reported by name and
  leave nothing in the gradebook; a missing notebook scores 0; an infinite loop loses only
  its cell; a deleted test cell is restored and graded; monkeypatched comparisons get 0;
* feedback and the grades CSV (totals + per-exercise columns) are produced.
"""
from __future__ import annotations

import csv
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import graders.mutants
from graders import submissions as subs

ROOT = Path(__file__).resolve().parents[1]
LESSONS = [m.name for m in pkgutil.iter_modules(graders.mutants.__path__)]
pytestmark = pytest.mark.slow

CRASH = "import os\nos._exit(1)  # kills the kernel"
TAMPER = ("import torch\nimport numpy as np\n"
          "torch.allclose = lambda *a, **k: True\n"
          "testing.check_close = lambda *a, **k: None\n")


def _grade(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SDCOURSE_CELL_TIMEOUT="20", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(course / "graders" / "grade.py"), *args],
                          cwd=course, env=env, capture_output=True, text=True, timeout=1800)


def _solution_lines(nb, gid):
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
    inside, out = False, []
    for line in cell.source.splitlines():
        if "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside:
            out.append(line)
    return out


def _plan(course: Path, lesson):
    """student id -> (assignment, notebook or None or bytes, expectations)."""
    plan = {}
    aid = lesson.assignment
    source = subs.read(course / "solutions" / aid / f"{aid}.ipynb")
    release = subs.read(course / "notebooks" / aid / f"{aid}.ipynb")
    ref = subs.reference_answers(source)
    plan[f"{aid}--reference"] = (aid, subs.fill(release, ref), {"all": "full"})
    plan[f"{aid}--blank"] = (aid, release, {"all": "zero"})
    for k, group in enumerate(subs.rotation(lesson.mutants)):
        nb = subs.fill(release, subs.apply(ref, group))
        plan[f"{aid}--wrong{k}"] = (aid, nb, {"wrong": {m.exercise for m in group},
                                              "names": [m.name for m in group]})
    # adversarial
    crash = subs.fill(release, ref)
    crash.cells.insert(3, nbformat.v4.new_code_cell(CRASH))
    plan[f"{aid}--crash"] = (aid, crash, {"failed": "kernel"})
    tamper = subs.fill(release, ref)
    tamper.cells.insert(3, nbformat.v4.new_code_cell(TAMPER))
    plan[f"{aid}--tamper"] = (aid, tamper, {"all": "zero"})
    plan[f"{aid}--malformed"] = (aid, b'{"cells": [ this is not json', {"failed": "malformed"})
    plan[f"{aid}--missing"] = (aid, None, {"failed": "no notebook submitted"})
    loop_ans = dict(ref)
    first_solution = next(gid for gid in ref if gid.startswith("ex"))
    loop_ans[first_solution] = re.sub(r"^( *)(def .*:\n)", r"\1\2\1    while True:\n\1        pass\n",
                                      ref[first_solution], count=1, flags=re.M)
    assert loop_ans[first_solution] != ref[first_solution]
    looped = subs.fill(release, loop_ans)
    test_ids = [c.metadata["nbgrader"]["grade_id"] for c in looped.cells
                if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    deleted = test_ids[-1]
    looped.cells = [c for c in looped.cells
                    if c.metadata.get("nbgrader", {}).get("grade_id") != deleted]
    plan[f"{aid}--loop-and-deleted-cell"] = (
        aid, looped, {"timeout_cell": first_solution, "restored": deleted})
    return plan


def _cell_scores(course, aid, student):
    from nbgrader.api import Gradebook, MissingEntry

    db = "sqlite:///" + str(course / "graders" / "workspace" / "gradebook.db")
    with Gradebook(db) as gb:
        try:
            sub = gb.find_submission(aid, student)
        except MissingEntry:
            return None
        return {g.name: (g.score, g.max_score) for nb in sub.notebooks for g in nb.grades
                if g.cell.cell_type == "code"}


class RoundTrip:
    """The round trip of one lesson (``LESSON``, a graders/mutants module name). One subclass per
    lesson below: ``--dist loadscope`` keeps a class on one xdist worker, so each lesson's course copy
    and autograde run are made once, and different lessons grade in parallel."""

    LESSON = ""

    @pytest.fixture(scope="class")
    def lesson(self, request):
        return subs.load_lesson(request.cls.LESSON)

    @pytest.fixture(scope="class")
    def course(self, lesson, tmp_path_factory) -> Path:
        """A copy of the course with a fresh gradebook; this lesson's release regenerated."""
        dest = subs.copy_course(tmp_path_factory.mktemp(lesson.assignment))
        shutil.rmtree(dest / "notebooks" / lesson.assignment)
        res = _grade(dest, "release", "-a", lesson.assignment)
        assert res.returncode == 0, res.stdout + res.stderr
        return dest

    def test_release_matches_committed_notebooks(self, course, lesson):
        aid = lesson.assignment
        generated = sorted(p.relative_to(course) for p in (course / "notebooks" / aid).rglob("*.ipynb"))
        committed = sorted(p.relative_to(ROOT) for p in (ROOT / "notebooks" / aid).rglob("*.ipynb"))
        assert generated == committed, "notebooks/ lists other notebooks than solutions/ generates"
        for rel in generated:
            assert (course / rel).read_bytes() == (ROOT / rel).read_bytes(), (
                f"{rel} differs from what `make assignments` generates: run it and commit the result")

    def test_release_has_no_solutions_or_hidden_tests(self, course, lesson):
        for path in (course / "notebooks" / lesson.assignment).rglob("*.ipynb"):
            text = path.read_text()
            for needle in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "graders"):
                assert needle not in text, f"{path.name} contains {needle!r}"
            source = subs.read(course / "solutions" / path.parent.name / path.name)
            for gid, answer in subs.reference_answers(source).items():
                body = [l.strip() for l in answer.splitlines() if l.strip()]
                released = subs.read(path)
                cell = next(c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
                # every line that was between the solution markers is gone from the release
                inner = [l.strip() for l in _solution_lines(source, gid)]
                leaked = [l for l in inner if l and l in cell.source.splitlines()
                          and not l.startswith("#") and l not in ("raise NotImplementedError()",)]
                assert not leaked, f"{gid}: solution lines leaked into the release: {leaked}"
                assert body  # the reference answer is not empty

    @pytest.fixture(scope="class")
    def graded(self, course, lesson):
        plan = _plan(course, lesson)
        submitted = course / "graders" / "workspace" / "submitted"
        for student, (aid, nb, _) in plan.items():
            folder = submitted / student / aid
            folder.mkdir(parents=True, exist_ok=True)
            if isinstance(nb, bytes):
                (folder / f"{aid}.ipynb").write_bytes(nb)
            elif nb is not None:
                subs.write(nb, folder / f"{aid}.ipynb")
        res = _grade(course, "autograde", "-a", lesson.assignment)
        assert res.returncode == 0, res.stdout + res.stderr
        with (course / "graders" / "workspace" / "autograde-report.csv").open() as f:
            report = {r["student"]: r["status"] for r in csv.DictReader(f)}
        return plan, report, res.stdout

    def test_every_submission_is_reported(self, graded):
        plan, report, stdout = graded
        assert set(report) == set(plan), stdout
        for student, status in report.items():
            assert student in stdout, f"{student} missing from the autograde summary"

    @pytest.mark.parametrize("kind", ["reference", "blank", "tamper"])
    def test_all_or_nothing_submissions(self, graded, course, kind):
        plan, report, stdout = graded
        for student, (aid, _, expect) in plan.items():
            if not student.endswith(f"--{kind}"):
                continue
            scores = _cell_scores(course, aid, student)
            assert scores, f"{student}: nothing in the gradebook ({report[student]})"
            for cell, (score, maximum) in scores.items():
                wanted = maximum if expect["all"] == "full" else 0
                assert score == wanted, f"{student}: {cell} scored {score}/{maximum}, expected {wanted}"

    def test_known_wrong_answers_lose_only_their_exercise(self, graded, course):
        plan, report, _ = graded
        checked = 0
        for student, (aid, _, expect) in plan.items():
            if "--wrong" not in student:
                continue
            scores = _cell_scores(course, aid, student)
            assert scores, f"{student}: {report[student]}"
            by_ex: dict[str, list] = {}
            for cell, (score, maximum) in scores.items():
                by_ex.setdefault(subs.exercise_of(cell), []).append((cell, score, maximum))
            for ex, cells in by_ex.items():
                got = sum(s for _, s, _ in cells)
                top = sum(m for _, _, m in cells)
                if ex in expect["wrong"]:
                    assert got < top, f"{student} ({expect['names']}): {ex} kept all {top} points"
                    assert any(s == 0 for _, s, _ in cells), f"{student}: no cell of {ex} scored 0"
                else:
                    assert got == top, f"{student} ({expect['names']}): correct {ex} lost points: {cells}"
                checked += 1
        assert checked

    def test_crash_malformed_and_missing_are_reported_not_recorded(self, graded, course):
        plan, report, _ = graded
        for student, (aid, _, expect) in plan.items():
            if "failed" not in expect:
                continue
            assert report[student].startswith("FAILED"), f"{student}: {report[student]}"
            assert expect["failed"] in report[student].lower(), report[student]
            assert _cell_scores(course, aid, student) is None, f"{student} left a grade in the gradebook"
            assert (course / "graders" / "workspace" / "submitted" / student / aid).exists()

    def test_infinite_loop_and_deleted_test_cell(self, graded, course):
        plan, report, _ = graded
        for student, (aid, _, expect) in plan.items():
            if "timeout_cell" not in expect:
                continue
            scores = _cell_scores(course, aid, student)
            assert scores, report[student]
            looping_ex = subs.exercise_of(expect["timeout_cell"])
            assert expect["restored"] in scores, "the deleted test cell was not restored"
            for cell, (score, maximum) in scores.items():
                if subs.exercise_of(cell) == looping_ex:
                    assert score == 0, f"{cell} should time out and score 0, got {score}"
                else:
                    assert score == maximum, f"{cell}: {score}/{maximum} (only the looping exercise may lose)"

    def test_feedback_and_grades_csv(self, graded, course, lesson):
        res = _grade(course, "feedback", "-s", f"{lesson.assignment}--reference")
        assert res.returncode == 0, res.stdout + res.stderr
        html = list((course / "graders" / "workspace" / "feedback").rglob("*.html"))
        assert html, "no feedback html written"
        out = course / "grades.csv"
        res = _grade(course, "grades", "--out", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        rows = list(csv.DictReader(out.open()))
        plan, report, _ = graded
        by_student = {r["student"]: r for r in rows}
        for student, (aid, _, expect) in plan.items():
            row = by_student[student]
            if "failed" in expect:
                assert row["total"] == "" and row["status"].startswith("FAILED"), row
            if expect.get("all") == "full":
                exercise_cols = [k for k in row if k.startswith("ex")]
                assert exercise_cols and float(row["total"]) == sum(float(row[k]) for k in exercise_cols)
                assert "manual grading pending" in row["status"]


for _name in LESSONS:
    globals()[f"TestRoundTrip_{_name}"] = type(f"TestRoundTrip_{_name}", (RoundTrip,), {"LESSON": _name})
