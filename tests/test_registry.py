"""The course registry and the rules every lesson follows (graders/README.md, "How to add a
lesson"): a lesson in solutions/ without its checks, known-wrong answers or helper module, or a
test cell outside the conventions, fails here instead of being released unchecked."""
from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from graders import course
from graders import submissions as subs
from graders.checks import bundle

LESSONS = course.lessons()
IDS = [l.assignment for l in LESSONS]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def test_lessons_are_discovered_in_order():
    assert [l.number for l in LESSONS] == sorted(l.number for l in LESSONS)
    assert len({l.number for l in LESSONS}) == len(LESSONS), "two lessons share a number"
    assert course.assignments() == IDS and IDS, "no lessons found in solutions/"


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_lesson_has_all_its_files(lesson):
    assert lesson.key, f"{lesson.assignment}: graders/checks/l{lesson.number}_<name>.py is missing"
    assert lesson.key.startswith(f"l{lesson.number}_")
    for path in (lesson.checks_path, lesson.mutants_path, lesson.helpers_path, lesson.release):
        assert path.is_file(), f"{lesson.assignment}: {path.relative_to(course.ROOT)} is missing"
    assert lesson.mutants().ASSIGNMENT == lesson.assignment
    assert lesson.mutants().MUTANTS, f"{lesson.key}: no known-wrong answers"
    readme = (course.ROOT / "README.md").read_text()
    row = next((l for l in readme.splitlines() if f"`{lesson.assignment}`" in l and l.startswith("|")), None)
    assert row, f"README.md course map has no row for {lesson.assignment}"


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_cells_follow_the_conventions(lesson):
    nb = subs.read(lesson.source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and subs.is_setup(code[0]), f"{lesson.assignment}: the first code cell must be tagged 'setup'"
    checks = lesson.checks().CHECKS
    used, parts = set(), set()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if not gid:
            assert "BEGIN HIDDEN TESTS" not in cell.source
            continue
        assert course.GRADE_ID.match(gid), f"grade id {gid!r} does not follow exN[a-z]_... / qN_..."
        if subs.is_solution(cell):
            assert gid.startswith("ex"), gid
            parts.add(course.part_of(gid))
        elif subs.is_test(cell):
            assert course.part_of(gid) in parts, f"test cell {gid} comes before (or without) its solution"
            blocks = HIDDEN.findall(cell.source)
            assert len(blocks) == 1, f"{gid}: every test cell has exactly one hidden block"
            assert cell.source.rstrip().endswith("### END HIDDEN TESTS"), f"{gid}: the hidden block goes last"
            lines = [l for l in blocks[0].splitlines() if l.strip()]
            assert lines[0] == f"from graders.checks import {lesson.key} as hidden", f"{gid}: {lines[0]!r}"
            assert len(lines) > 1, f"{gid}: no hidden.check(...) line"
            for line in lines[1:]:
                call = ast.parse(line).body[0].value
                assert (isinstance(call, ast.Call) and ast.unparse(call.func) == "hidden.check"
                        and isinstance(call.args[0], ast.Constant)), f"{gid}: {line!r} is not hidden.check(\"name\", ...)"
                name = call.args[0].value
                assert name in checks.names(), f"{gid}: {lesson.key} has no check {name!r}"
                used.add(name)
        elif meta.get("grade") and meta.get("solution"):
            assert gid.startswith("q") and cell.cell_type == "markdown", gid
    assert set(checks.names()) == used, f"{lesson.key}: checks no test cell calls: {set(checks.names()) - used}"


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_sandbox_bundle_builds(lesson):
    mod = bundle.load(lesson.key)
    for name, spec in mod.RUN_TABLE.items():
        assert callable(getattr(mod, spec["run"], None)), f"{lesson.key}.{name}: {spec['run']} not in the bundle"
    text = bundle.source(lesson.key)
    assert "import graders" not in text and "from graders.checks import l" not in text
    for oracle in ("diffusers", "open_clip", "transformers"):
        assert not re.search(rf"^(from|import) {oracle}\b", text, re.M), f"{lesson.key}: bundle imports {oracle}"


def test_exercise_and_part_keys():
    assert course.exercise_of("ex2b_timestep_mlp_test_values") == "ex2"
    assert course.part_of("ex2b_timestep_mlp_test_values") == "ex2b"
    assert course.exercise_of("ex10_x") == "ex10" and course.part_of("ex10_x") == "ex10"
    assert course.exercise_of("q3_transfer") == "q3"


def test_instructor_env_is_a_new_dict():
    import os

    before = dict(os.environ)
    env = course.instructor_env({"PYTHONPATH": "/x", "PATH": "/bin"})
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(course.ROOT), "/x"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["TQDM_DISABLE"] == "1"
    assert course.instructor_env({"HF_HUB_OFFLINE": "0"})["HF_HUB_OFFLINE"] == "0"
    assert dict(os.environ) == before


def test_sdcourse_imports_lazily():
    code = ("import sys, sdcourse.shapes; from sdcourse import shapes, get_device; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'diffusers', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
