"""The course registry: the one place that knows where things are and what the lessons are.

Everything else (the grading driver, the nbgrader config, the benchmarks, the tests, the
Makefile through ``python -m graders.course env``) asks this module for:

* paths: :data:`ROOT`, :data:`SOURCE` (``solutions/``), :data:`RELEASE` (``notebooks/``),
  :data:`DATA`, :data:`WORKSPACE` (``graders/workspace/``: submissions, gradebook);
* the lessons, discovered from ``solutions/<assignment>/<assignment>.ipynb``: :func:`lessons`,
  :func:`lesson`, :func:`assignments`. Lesson ``6-3-N-...`` has one key ``lN_<name>`` shared by
  its three modules: ``graders/checks/lN_<name>.py`` (hidden checks),
  ``graders/mutants/lN_<name>.py`` (known-wrong answers) and ``sdcourse/lN_<name>.py`` (its
  figures, widgets and experiments);
* the exercise of a grade id (:func:`exercise_of`, :func:`part_of`): ``ex2b_timestep_mlp_test``
  is part ``ex2b`` of exercise ``ex2``; ``q1_predict`` is question ``q1``;
* the instructor environment (:func:`instructor_env`): what a process that runs hidden checks
  or nbgrader needs (``graders`` importable, offline hub, no progress bars).

Run ``python -m graders.course`` to print the registry.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRADERS = ROOT / "graders"
SOURCE = ROOT / "solutions"
RELEASE = ROOT / "notebooks"
DATA = ROOT / "data"
PACKAGE = ROOT / "sdcourse"
WORKSPACE = GRADERS / "workspace"
COURSE_ID = "sd-module-6-3"

_ASSIGNMENT = re.compile(r"^6-3-(\d+)-[a-z0-9-]+$")
#: Grade ids: ``ex<N>[part]_<words>`` for exercises (solution and test cells), ``q<N>_<words>``
#: for free-response questions.
GRADE_ID = re.compile(r"^(?P<part>(?P<exercise>(?:ex|q)\d+)[a-z]?)_[a-z0-9_]+$")


@dataclass(frozen=True)
class Lesson:
    assignment: str          # "6-3-2-conditioning-the-unet"
    number: int              # 2
    key: str | None          # "l2_conditioning"; None when graders/checks/l2_*.py is missing

    @property
    def source(self) -> Path:
        return SOURCE / self.assignment / f"{self.assignment}.ipynb"

    @property
    def release(self) -> Path:
        return RELEASE / self.assignment / f"{self.assignment}.ipynb"

    def _need_key(self) -> str:
        if not self.key:
            raise LookupError(f"lesson {self.assignment} has no checks module "
                              f"graders/checks/l{self.number}_<name>.py (see graders/README.md)")
        return self.key

    @property
    def checks_path(self) -> Path:
        return GRADERS / "checks" / f"{self._need_key()}.py"

    @property
    def mutants_path(self) -> Path:
        return GRADERS / "mutants" / f"{self._need_key()}.py"

    @property
    def helpers_path(self) -> Path:
        return PACKAGE / f"{self._need_key()}.py"

    def checks(self):
        """The lesson's hidden checks module (``graders.checks.<key>``)."""
        return importlib.import_module(f"graders.checks.{self._need_key()}")

    def mutants(self):
        """The lesson's known-wrong answers module (``graders.mutants.<key>``)."""
        return importlib.import_module(f"graders.mutants.{self._need_key()}")


def lessons() -> list[Lesson]:
    """Every lesson in ``solutions/``, in course order."""
    out = []
    for folder in sorted(p for p in SOURCE.iterdir() if p.is_dir()) if SOURCE.is_dir() else []:
        m = _ASSIGNMENT.match(folder.name)
        if not m or not (folder / f"{folder.name}.ipynb").is_file():
            continue
        n = int(m.group(1))
        keys = sorted(p.stem for p in (GRADERS / "checks").glob(f"l{n}_*.py"))
        out.append(Lesson(folder.name, n, keys[0] if len(keys) == 1 else None))
    return sorted(out, key=lambda l: l.number)


def assignments() -> list[str]:
    return [l.assignment for l in lessons()]


def lesson(name: str) -> Lesson:
    """A lesson by assignment id (``6-3-2-conditioning-the-unet``) or key (``l2_conditioning``)."""
    for l in lessons():
        if name in (l.assignment, l.key):
            return l
    raise LookupError(f"no lesson {name!r}; the lessons are: {', '.join(assignments())}")


def exercise_of(grade_id: str) -> str:
    """``ex2b_timestep_mlp_test`` -> ``ex2``; ``q1_predict`` -> ``q1`` (a grades.csv column)."""
    m = GRADE_ID.match(grade_id)
    return m.group("exercise") if m else grade_id.split("_", 1)[0]


def part_of(grade_id: str) -> str:
    """``ex2b_timestep_mlp_test`` -> ``ex2b``; ``ex1_x`` -> ``ex1`` (the unit a known-wrong
    answer must lose, while every other part keeps its points)."""
    m = GRADE_ID.match(grade_id)
    return m.group("part") if m else grade_id.split("_", 1)[0]


def db_url() -> str:
    """The gradebook's database: ``$SDCOURSE_DB_URL`` (e.g. ``postgresql://user@host/sdcourse``)
    or SQLite in the workspace. The grading status table lives in the same database."""
    return os.environ.get("SDCOURSE_DB_URL") or "sqlite:///" + str(WORKSPACE / "gradebook.db")


def instructor_env(base: dict | None = None) -> dict:
    """The environment of a process that runs nbgrader or hidden checks: ``graders``
    importable, the hub offline (unless the caller set ``HF_HUB_OFFLINE``), no progress
    bars, this interpreter's ``bin`` first on PATH (nbgrader runs ``alembic`` from there).
    Returns a new dict; never changes ``os.environ``."""
    env = dict(os.environ if base is None else base)
    paths = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["TQDM_DISABLE"] = "1"
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(dict.fromkeys([bindir] + env.get("PATH", "").split(os.pathsep)))
    return env


def _main(argv: list[str]) -> int:
    if argv[:1] == ["env"]:  # shell form, for the Makefile: eval "$(python -m graders.course env)"
        import shlex

        env = instructor_env()
        for k in ("PYTHONPATH", "HF_HUB_OFFLINE", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS",
                  "TOKENIZERS_PARALLELISM"):
            print(f"export {k}={shlex.quote(env[k])}")
        return 0
    print(f"course {COURSE_ID} at {ROOT}")
    for l in lessons():
        print(f"  {l.number}  {l.assignment:40s} key={l.key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
