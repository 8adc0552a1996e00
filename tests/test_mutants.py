"""Known-wrong answers fail their own exercise part's tests, name the misconception, and leave
every other part passing; the reference passes everything. Quick: no kernel, no nbgrader (the
round trip in test_grading.py repeats this end to end).

Each run executes the lesson's ``setup``-tagged, solution and test cells in notebook order, in a
fresh module installed as ``__main__`` (as in a kernel), with the hidden checks in-process.
"""
from __future__ import annotations

import pytest

from graders import course
from graders import submissions as subs

LESSONS = [l.key for l in course.lessons() if l.key]


@pytest.mark.parametrize("key", LESSONS)
def test_reference_passes_every_test(key):
    results = subs.run_in_process(key)
    assert results, f"{key}: no test cells found"
    assert not {k: v for k, v in results.items() if v}, results


def _mutant_params():
    for key in LESSONS:
        for m in subs.load_lesson(key).mutants:
            yield pytest.param(key, m, id=f"{key}-{m.name}")


@pytest.mark.parametrize("key,mutant", list(_mutant_params()))
def test_mutant_fails_its_part_only(key, mutant):
    source = subs.read(course.lesson(key).source)
    answers = subs.apply(subs.reference_answers(source), [mutant])
    results = subs.run_in_process(key, answers)
    own = {k: v for k, v in results.items() if course.part_of(k) == mutant.part}
    others = {k: v for k, v in results.items() if course.part_of(k) != mutant.part}
    failures = [v for v in own.values() if v]
    assert own, f"{mutant.name}: no test cell belongs to part {mutant.part}"
    assert failures, f"{mutant.name} passes every test of {mutant.part}: the tests cannot catch it"
    assert any(mutant.message.lower() in f.lower() for f in failures), (
        f"{mutant.name}: no failure message names the misconception ({mutant.message!r}):\n"
        + "\n".join(failures))
    assert not any(others.values()), f"{mutant.name} broke other parts: {others}"


@pytest.mark.parametrize("key", LESSONS)
def test_every_part_has_three_known_wrong_answers(key):
    lesson = subs.load_lesson(key)
    parts = {course.part_of(gid) for kind, gid, _ in subs.lesson_cells(key) if kind == "solution"}
    for part in sorted(parts):
        n = sum(m.part == part for m in lesson.mutants)
        assert n >= 3, f"{lesson.assignment} {part} has {n} known-wrong answers; the course asks for 3+"
