"""What students receive (notebooks/, data/, the sdcourse package) holds no solution code,
no hidden test and no grader code; the wheel ships only sdcourse."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDENT_TREES = ["notebooks", "sdcourse", "data"]
FORBIDDEN = [re.compile(p) for p in (r"BEGIN SOLUTION", r"END SOLUTION", r"BEGIN HIDDEN TESTS",
                                      r"\bfrom graders\b", r"\bimport graders\b")]


def _student_files():
    for tree in STUDENT_TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".ipynb", ".md", ".json", ".txt", ".cfg"}:
                yield path


def test_student_files_hold_no_solutions_or_grader_code():
    offenders = []
    for path in _student_files():
        text = path.read_text(errors="ignore")
        for pat in FORBIDDEN:
            if pat.search(text):
                offenders.append(f"{path.relative_to(ROOT)}: {pat.pattern}")
    assert not offenders, offenders


def test_every_source_lesson_has_a_release():
    for src in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        rel = ROOT / "notebooks" / src.parent.name / src.name
        assert rel.exists(), f"{src.relative_to(ROOT)} has no release: run `make assignments`"


def test_package_ships_only_sdcourse():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cfg["tool"]["setuptools"]["packages"]["find"]["include"] == ["sdcourse*"]
