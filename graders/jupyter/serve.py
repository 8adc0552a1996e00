"""Start the course's JupyterLab, as a student or as an instructor.

    python graders/jupyter/serve.py student    [jupyter lab options]   # make lab
    python graders/jupyter/serve.py instructor [jupyter lab options]   # make formgrader

**student**: JupyterLab on ``notebooks/``, offline (``HF_HUB_OFFLINE=1`` unless set), with
nbgrader's *Validate* button only: ``graders/jupyter/student/`` (put first on
``JUPYTER_CONFIG_PATH``) turns off nbgrader's Formgrader, assignment-list and course-list server
extensions and its instructor menus in Lab. Notebooks run on the ``Python 3 (ipykernel)``
kernel, which is the interpreter Jupyter runs on (this venv).

**instructor**: JupyterLab on the course root (so ``solutions/`` and the Formgrader's links
``/tree/solutions/...`` open), in the environment of every instructor command
(``graders.course.instructor_env()``: ``graders`` importable, the hub offline), with nbgrader's
configuration ``graders/nbgrader_config.py`` (``graders/jupyter/instructor/nbgrader_config.py``
loads it). The Formgrader's *Autograde* button therefore runs the same ``SandboxScore`` step
in the same bubblewrap sandbox as ``make autograde``. The grading workspace is created first,
so the Formgrader can open the gradebook on a fresh clone.

:func:`command` returns the command line and environment (the browser tests start their
servers with it on a copy of the course); running this file execs it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ROLES = ("student", "instructor")


def _course():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from graders import course

    if course.ROOT != ROOT:
        raise RuntimeError(f"graders.course was imported from {course.ROOT}, not from {ROOT}")
    return course


def command(role: str, extra: list[str] | tuple = (), base_env: dict | None = None
            ) -> tuple[list[str], dict, Path]:
    """(argv, env, cwd) that start JupyterLab for ``role`` on this course."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    course = _course()
    env = dict(os.environ if base_env is None else base_env)
    if role == "instructor":
        env = course.instructor_env(env)
        root = course.ROOT
        # formulas from this machine: nbconvert finds our MathJax macro (share/nbconvert/
        # templates/base/mathjax.html.j2) before its own, which loads MathJax from a CDN
        data = [str(HERE / "share")] + [p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        env["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(data))
        # nbgrader opens the gradebook in the workspace, and keeps its (unused) exchange there
        (course.WORKSPACE / "exchange").mkdir(parents=True, exist_ok=True)
    else:
        env.setdefault("HF_HUB_OFFLINE", "1")
        # never the instructor's: the student's kernels must not see graders/
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        else:
            env.pop("PYTHONPATH", None)
        root = course.RELEASE
    config = [str(HERE / role)] + [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(dict.fromkeys(config))
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        argv.append("--allow-root")
    return argv + list(extra), env, course.ROOT


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ROLES:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    role, extra = argv[0], argv[1:]
    cmd, env, cwd = command(role, extra)
    if role == "instructor":
        print("Instructor JupyterLab on the course root. Formgrader: menu Nbgrader -> Formgrader "
              "(or <server URL>/formgrader). Ctrl-C stops it.", flush=True)
    os.chdir(cwd)
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
