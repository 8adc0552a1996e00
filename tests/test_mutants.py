"""Known-wrong answers fail their exercise's tests, name the misconception, and leave the
other exercises passing; the reference passes everything. Fast: no kernel, no nbgrader
(the nbgrader round trip in test_grading.py repeats this end to end)."""
from __future__ import annotations

import contextlib
import io
import pkgutil

import pytest

import graders.mutants
from graders import submissions as subs

LESSONS = [m.name for m in pkgutil.iter_modules(graders.mutants.__path__)]


def _cells(lesson):
    nb = subs.read(lesson.source)
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    solutions = {k: v for k, v in subs.reference_answers(nb).items()
                 if any(c.metadata.get("nbgrader", {}).get("grade_id") == k and c.cell_type == "code"
                        for c in nb.cells)}
    tests = {c.metadata["nbgrader"]["grade_id"]: subs.strip_markers(c.source) for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
    return setup, solutions, tests


def _run_tests(setup, solutions, tests):
    """Exec setup + solutions, then every test cell; return {grade_id: error message or None}."""
    ns: dict = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(setup, "<setup>", "exec"), ns)
        for gid, code in solutions.items():
            exec(compile(code, f"<{gid}>", "exec"), ns)
        results = {}
        for gid, code in tests.items():
            try:
                exec(compile(code, f"<{gid}>", "exec"), ns)
                results[gid] = None
            except Exception as exc:  # noqa: BLE001 - any failure is a lost point
                results[gid] = f"{type(exc).__name__}: {exc}"
    return results


@pytest.mark.parametrize("module", LESSONS)
def test_reference_passes_every_test(module):
    lesson = subs.load_lesson(module)
    setup, solutions, tests = _cells(lesson)
    results = _run_tests(setup, solutions, tests)
    assert not {k: v for k, v in results.items() if v}, results


def _mutant_params():
    for module in LESSONS:
        for m in subs.load_lesson(module).mutants:
            yield pytest.param(module, m, id=f"{module}-{m.name}")


@pytest.mark.parametrize("module,mutant", list(_mutant_params()))
def test_mutant_fails_its_exercise_only(module, mutant):
    lesson = subs.load_lesson(module)
    setup, solutions, tests = _cells(lesson)
    results = _run_tests(setup, subs.apply(solutions, [mutant]), tests)
    own = {k: v for k, v in results.items() if subs.exercise_of(k) == mutant.exercise}
    others = {k: v for k, v in results.items() if subs.exercise_of(k) != mutant.exercise}
    failures = [v for v in own.values() if v]
    assert failures, f"{mutant.name} passes every test of {mutant.exercise}: the tests cannot catch it"
    assert any(mutant.message.lower() in f.lower() for f in failures), (
        f"{mutant.name}: no failure message names the misconception ({mutant.message!r}):\n"
        + "\n".join(failures))
    assert not any(others.values()), f"{mutant.name} broke other exercises: {others}"


def test_every_exercise_has_three_known_wrong_answers():
    for module in LESSONS:
        lesson = subs.load_lesson(module)
        _, solutions, _ = _cells(lesson)
        exercises = {subs.exercise_of(k) for k in solutions}
        for ex in exercises:
            n = sum(m.exercise == ex for m in lesson.mutants)
            assert n >= 3, f"{lesson.assignment} {ex} has {n} known-wrong answers; the course asks for 3+"
