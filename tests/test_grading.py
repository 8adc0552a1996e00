"""The grading round trip of every lesson, in a temporary copy of the course, through the real
commands (``python -m graders.grade release / autograde -j 2 / feedback / grades``), each
submission in its own sandbox and scored outside it:

* notebooks/ is exactly what ``make assignments`` generates from solutions/, and holds no
  solution, hidden test or grader code;
* the reference solution scores full marks on every autograded cell; the untouched release 0;
* a submission with one known-wrong answer in every exercise part loses each part's points
  (every known-wrong answer is also checked on its own, in-process, by test_mutants.py);
* a deleted test cell is restored and graded;
* a malformed or a missing notebook is reported by name and leaves nothing in the gradebook;
* feedback and the grades CSV (totals + per-exercise columns) are produced.

Cheats and faults of every kind (infinite loops included) are in test_attacks.py.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graders import course
from graders import submissions as subs

LESSONS = [l.key for l in course.lessons() if l.key]
ROOT = course.ROOT
pytestmark = pytest.mark.slow


def _grade(copy: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m graders.grade ...`` in a course copy (its own graders/ and workspace)."""
    env = course.instructor_env()
    env.update(PYTHONPATH=str(copy), SDCOURSE_CELL_TIMEOUT="20", SDCOURSE_PROGRESS="0")
    env.pop("SDCOURSE_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "graders.grade", *args],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=2400)


def _solution_lines(nb, gid):
    cell = next(c for c in nb.cells if subs.grade_id(c) == gid)
    inside, out = False, []
    for line in cell.source.splitlines():
        if "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside:
            out.append(line)
    return out


def _plan(copy: Path, lesson):
    """student id -> (notebook, bytes or None, expectations)."""
    aid = lesson.assignment
    source = subs.read(copy / "solutions" / aid / f"{aid}.ipynb")
    release = subs.read(copy / "notebooks" / aid / f"{aid}.ipynb")
    ref = subs.reference_answers(source)
    plan = {"reference": (subs.fill(release, ref), {"all": "full"}),
            "blank": (release, {"all": "zero"})}
    one_per_part = {}
    for m in lesson.mutants:
        one_per_part.setdefault(m.part, m)
    group = list(one_per_part.values())
    wrong = subs.fill(release, subs.apply(ref, group))
    # the student also deleted a test cell: it is restored from the source and graded
    deleted = [subs.grade_id(c) for c in wrong.cells if subs.is_test(c)][-1]
    wrong.cells = [c for c in wrong.cells if subs.grade_id(c) != deleted]
    plan["wrong"] = (wrong, {"wrong": {m.part for m in group}, "names": [m.name for m in group],
                             "restored": deleted})
    plan["malformed"] = (b'{"cells": [ this is not json', {"failed": "malformed"})
    plan["missing"] = (None, {"failed": "no notebook submitted"})
    return plan


@pytest.fixture(scope="class")
def lesson(request):
    return subs.load_lesson(request.cls.LESSON)


@pytest.fixture(scope="class")
def copy(lesson, tmp_path_factory) -> Path:
    """A copy of the course with a fresh gradebook; this lesson's release regenerated."""
    dest = subs.copy_course(tmp_path_factory.mktemp(lesson.assignment))
    shutil.rmtree(dest / "notebooks" / lesson.assignment)
    res = _grade(dest, "release", "-a", lesson.assignment)
    assert res.returncode == 0, res.stdout + res.stderr
    return dest


@pytest.fixture(scope="class")
def graded(copy, lesson):
    aid = lesson.assignment
    plan = _plan(copy, lesson)
    for student, (nb, _) in plan.items():
        folder = copy / "graders" / "workspace" / "submitted" / f"{aid}--{student}" / aid
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(nb, bytes):
            (folder / f"{aid}.ipynb").write_bytes(nb)
        elif nb is not None:
            subs.write(nb, folder / f"{aid}.ipynb")
    res = _grade(copy, "autograde", "-a", aid, "-j", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    with (copy / "graders" / "workspace" / "autograde-report.csv").open() as f:
        report = {r["student"].split("--", 1)[1]: r["status"] for r in csv.DictReader(f)}
    return plan, report, res.stdout


class RoundTrip:
    """The round trip of one lesson (``LESSON``, its key). One subclass per lesson below:
    ``--dist loadscope`` keeps a class on one xdist worker, so each lesson's course copy and
    autograde run are made once, and different lessons grade in parallel."""

    LESSON = ""

    def test_release_matches_committed_notebooks(self, copy, lesson):
        aid = lesson.assignment
        generated = sorted(p.relative_to(copy) for p in (copy / "notebooks" / aid).rglob("*.ipynb"))
        committed = sorted(p.relative_to(ROOT) for p in (ROOT / "notebooks" / aid).rglob("*.ipynb"))
        assert generated == committed, "notebooks/ lists other notebooks than solutions/ generates"
        for rel in generated:
            assert (copy / rel).read_bytes() == (ROOT / rel).read_bytes(), (
                f"{rel} differs from what `make assignments` generates: run it and commit the result")

    def test_release_has_no_solutions_hidden_tests_outputs_or_widget_state(self, copy, lesson):
        for path in (copy / "notebooks" / lesson.assignment).rglob("*.ipynb"):
            text = path.read_text()
            for needle in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "graders",
                           "NBVAL_CHECK_OUTPUT", "application/vnd.jupyter.widget-state+json"):
                assert needle not in text, f"{path.name} contains {needle!r}"
            released = subs.read(path)
            assert "widgets" not in released.metadata, f"{path.name} carries saved widget state"
            for cell in released.cells:
                if cell.cell_type == "code":
                    assert not cell.outputs and cell.execution_count is None, \
                        f"{path.name} carries outputs of the reference run"
            source = subs.read(copy / "solutions" / path.parent.name / path.name)
            for gid, answer in subs.reference_answers(source).items():
                cell = next(c for c in released.cells if subs.grade_id(c) == gid)
                inner = [l.strip() for l in _solution_lines(source, gid)]
                leaked = [l for l in inner if l and l in cell.source.splitlines()
                          and not l.startswith("#") and l not in ("raise NotImplementedError()",)]
                assert not leaked, f"{gid}: solution lines leaked into the release: {leaked}"
                assert answer.strip()  # the reference answer is not empty

    def test_every_submission_is_reported(self, graded):
        plan, report, stdout = graded
        assert set(report) == set(plan), stdout
        for student in plan:
            assert student in report, f"{student} missing from the report: {report}"

    @pytest.mark.parametrize("kind", ["reference", "blank"])
    def test_all_or_nothing_submissions(self, graded, copy, lesson, kind):
        plan, report, _ = graded
        expect = plan[kind][1]
        scores = subs.cell_scores(copy, lesson.assignment, f"{lesson.assignment}--{kind}")
        assert scores, f"{kind}: nothing in the gradebook ({report[kind]})"
        for cell, (score, maximum) in scores.items():
            wanted = maximum if expect["all"] == "full" else 0
            assert score == wanted, f"{kind}: {cell} scored {score}/{maximum}, expected {wanted}"

    def test_known_wrong_answers_lose_only_their_part(self, graded, copy, lesson):
        plan, report, _ = graded
        expect = plan["wrong"][1]
        scores = subs.cell_scores(copy, lesson.assignment, f"{lesson.assignment}--wrong")
        assert scores, report["wrong"]
        by_part: dict[str, list] = {}
        for cell, (score, maximum) in scores.items():
            by_part.setdefault(course.part_of(cell), []).append((cell, score, maximum))
        for part, cells in by_part.items():
            got, top = sum(s for _, s, _ in cells), sum(m for _, _, m in cells)
            if part in expect["wrong"]:
                assert got < top and any(s == 0 for _, s, _ in cells), \
                    f"{expect['names']}: {part} kept its points: {cells}"
            else:
                assert got == top, f"{expect['names']}: correct {part} lost points: {cells}"

    def test_malformed_and_missing_are_reported_not_recorded(self, graded, copy, lesson):
        plan, report, _ = graded
        for kind in ("malformed", "missing"):
            assert report[kind].startswith("failed"), f"{kind}: {report[kind]}"
            assert plan[kind][1]["failed"] in report[kind].lower(), report[kind]
            assert subs.cell_scores(copy, lesson.assignment, f"{lesson.assignment}--{kind}") is None

    def test_a_deleted_test_cell_is_restored_and_graded(self, graded, copy, lesson):
        plan, report, _ = graded
        restored = plan["wrong"][1]["restored"]
        scores = subs.cell_scores(copy, lesson.assignment, f"{lesson.assignment}--wrong")
        assert restored in scores, f"the deleted test cell {restored} was not restored: {report['wrong']}"

    def test_feedback_and_grades_csv(self, graded, copy, lesson):
        res = _grade(copy, "feedback", "-s", f"{lesson.assignment}--reference")
        assert res.returncode == 0, res.stdout + res.stderr
        html = list((copy / "graders" / "workspace" / "feedback").rglob("*.html"))
        assert html, "no feedback html written"
        assert "passed: the hidden tests" in html[0].read_text()
        out = copy / "grades.csv"
        res = _grade(copy, "grades", "--out", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        rows = {r["student"].split("--", 1)[1]: r for r in csv.DictReader(out.open())}
        plan, _, _ = graded
        for student, (_, expect) in plan.items():
            row = rows[student]
            if "failed" in expect:
                assert row["total"] == "" and row["status"].startswith("failed"), row
            if expect.get("all") == "full":
                exercise_cols = [k for k in row if re.fullmatch(r"ex\d+", k)]
                assert exercise_cols and float(row["total"]) == sum(float(row[k]) for k in exercise_cols)
                assert "manual grading pending" in row["status"]


for _name in LESSONS:
    globals()[f"TestRoundTrip_{_name}"] = type(f"TestRoundTrip_{_name}", (RoundTrip,), {"LESSON": _name})
