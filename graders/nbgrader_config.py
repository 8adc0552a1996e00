"""nbgrader configuration for Module 6.3 (instructor-only; never shipped to students).

Layout, relative to the repository root (``CourseDirectory.root``):

    solutions/<assignment>/<assignment>.ipynb    the ONE source   (nbgrader "source")
    notebooks/<assignment>/<assignment>.ipynb    student release  (nbgrader "release")
    graders/workspace/submitted/<student>/<assignment>/...   collected submissions
    graders/workspace/autograded/...  graders/workspace/feedback/...
    graders/workspace/gradebook.db

``graders/workspace/`` is gitignored: it holds student work and grades.

NOTE: nbgrader also has a setting called ``solution_directory`` (default "solution"),
used only by ``nbgrader generate_solution``. It is UNRELATED to our ``solutions/``
folder, which is nbgrader's *source* directory. We point ``solution_directory`` into
the gitignored workspace so that nobody mistakes the two.

Use it through ``graders/grade.py`` (the Makefile targets), or run nbgrader by hand from
this folder: ``cd graders && nbgrader autograde 6-3-2-conditioning-the-unet``.
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when this file is loaded)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKSPACE = os.path.join(ROOT, "graders", "workspace")

c.CourseDirectory.course_id = "sd-module-6-3"
c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = os.path.join("graders", "workspace", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("graders", "workspace", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("graders", "workspace", "feedback")
c.CourseDirectory.solution_directory = os.path.join("graders", "workspace", "nbgrader-solution")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(WORKSPACE, "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".~*"]

# Deterministic release: no timestamps or per-run ids in notebooks/ (tests compare them).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A submission whose kernel cannot start, or whose notebook is missing a graded cell,
# must still be graded: restore deleted graded cells from the source.
c.OverwriteCells.add_missing_cells = True

# Execution: the slowest lesson cell takes a few seconds on a 2-core laptop CPU; a student's
# infinite loop is interrupted after this many seconds and only that cell loses its points.
c.Execute.timeout = int(os.environ.get("SDCOURSE_CELL_TIMEOUT", "60"))  # tests lower it
c.Execute.interrupt_on_timeout = True
# Keep pip's/torch's stray warnings from zeroing a test cell (nbgrader scores any stderr as
# an error); the tests themselves are written to be silent, this is the backstop.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"Warning|warn|it/s\]|s/it\]|\d+%\|"
# Students' cell output can be huge (printing a tensor in a loop); cap it in feedback.
c.LimitOutput.max_lines = 200
# Quiet kernels: ipykernel's start-up warnings would otherwise flood the grading log.
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
