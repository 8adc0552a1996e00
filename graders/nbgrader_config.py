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
The gradebook is SQLite in the workspace unless ``$SDCOURSE_DB_URL`` names another database
(e.g. ``postgresql://user@host/sdcourse``).
"""
import os
import sys

c = get_config()  # noqa: F821  (provided by traitlets when this file is loaded)

# Paths come from the course registry (graders/course.py); make it importable when nbgrader
# loads this file on its own (e.g. the Formgrader).
_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _root not in sys.path:
    sys.path.insert(0, _root)
from graders import course  # noqa: E402

c.CourseDirectory.course_id = course.COURSE_ID
c.CourseDirectory.root = str(course.ROOT)
c.CourseDirectory.source_directory = os.path.relpath(course.SOURCE, course.ROOT)
c.CourseDirectory.release_directory = os.path.relpath(course.RELEASE, course.ROOT)
_ws = os.path.relpath(course.WORKSPACE, course.ROOT)
c.CourseDirectory.submitted_directory = os.path.join(_ws, "submitted")
c.CourseDirectory.autograded_directory = os.path.join(_ws, "autograded")
c.CourseDirectory.feedback_directory = os.path.join(_ws, "feedback")
c.CourseDirectory.solution_directory = os.path.join(_ws, "nbgrader-solution")
c.CourseDirectory.db_url = course.db_url()
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".~*"]

# Deterministic release: no timestamps or per-run ids in notebooks/ (tests compare them).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# A submission whose kernel cannot start, or whose notebook is missing a graded cell,
# must still be graded: restore deleted graded cells from the source.
c.OverwriteCells.add_missing_cells = True

# Execution: every submission runs in its own sandbox and is scored outside it
# (graders/autograde.py, graders/sandbox.py). SandboxScore replaces nbgrader's Execute step;
# the test cells' outputs it writes are the trusted verdicts SaveAutoGrades reads.
from graders.autograde import SandboxScore  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, LimitOutput,  # noqa: E402
                                    SaveAutoGrades)

c.Autograde.autograde_preprocessors = [SandboxScore, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
# The slowest lesson cell takes a few seconds on a 2-core laptop CPU; a cell that runs longer
# than this is stopped and only that cell loses its points; a whole notebook gets the budget.
c.SandboxScore.cell_timeout = int(os.environ.get("SDCOURSE_CELL_TIMEOUT", "60"))  # tests lower it
c.SandboxScore.budget_seconds = int(os.environ.get("SDCOURSE_NOTEBOOK_BUDGET", "600"))
c.SandboxScore.use_sandbox = os.environ.get("SDCOURSE_NO_SANDBOX", "") != "1"
# nbgrader's own Execute (used by its "Validate" button in a student's JupyterLab)
c.Execute.timeout = c.SandboxScore.cell_timeout
c.Execute.interrupt_on_timeout = True
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
# Students' cell output can be huge (printing a tensor in a loop); cap it in feedback.
c.LimitOutput.max_lines = 200

# --------------------------------------------------------------------------- Formgrader, feedback
# What the instructor's JupyterLab (`make formgrader`, graders/jupyter/) and the feedback files
# need besides grading itself.
import shutil  # noqa: E402

import nbformat  # noqa: E402
import nbgrader  # noqa: E402
from nbgrader import utils as _nbutils  # noqa: E402
from nbgrader.preprocessors import (ClearOutput, DeduplicateIds, OverwriteCells,  # noqa: E402
                                    OverwriteKernelspec)

_JUPYTER = os.path.join(str(course.GRADERS), "jupyter")

# Formulas offline. nbgrader's Formgrader and feedback templates load MathJax from a CDN;
# graders/jupyter/share/nbconvert/templates/base/mathjax.html.j2 replaces that macro: the
# Formgrader's pages load the MathJax that jupyter_server_mathjax serves, a feedback file the
# `mathjax/` folder next to it, which this hook hard-links (no copies) into every feedback
# folder so that a student's folder works offline on its own.
# (The Formgrader's own exporter ignores this setting: graders/jupyter/serve.py puts
# graders/jupyter/share on JUPYTER_PATH for the instructor's server instead.)
c.HTMLExporter.extra_template_basedirs = [
    os.path.join(_JUPYTER, "share", "nbconvert", "templates"),
    os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates")]


def _link_tree(src, dest):
    for dirpath, _dirs, files in os.walk(src):
        here = os.path.join(dest, os.path.relpath(dirpath, src))
        os.makedirs(here, exist_ok=True)
        for name in files:
            target = os.path.join(here, name)
            if not os.path.exists(target):
                try:
                    os.link(os.path.join(dirpath, name), target)
                except OSError:  # another file system: a copy is the only way
                    shutil.copy2(os.path.join(dirpath, name), target)


def link_mathjax(notebooks=(), **_):
    """GenerateFeedback's post-convert hook: ``mathjax/`` next to each feedback file."""
    import jupyter_server_mathjax

    static = os.path.join(os.path.dirname(jupyter_server_mathjax.__file__), "static")
    autograded = os.path.join(str(course.ROOT), c.CourseDirectory.autograded_directory)
    feedback = os.path.join(str(course.ROOT), c.CourseDirectory.feedback_directory)
    for nb in notebooks:
        rel = os.path.relpath(os.path.dirname(os.path.abspath(nb)), autograded)
        if not rel.startswith(os.pardir) and os.path.isdir(os.path.join(feedback, rel)):
            _link_tree(static, os.path.join(feedback, rel, "mathjax"))


c.GenerateFeedback.post_convert_hook = link_mathjax


# "checksum has changed!" for untouched submissions. nbgrader records each read-only cell's
# checksum from the SOURCE (hidden tests included, before the release strips them), so every
# test cell with hidden tests differs from what students received and nbgrader warns, although
# nothing was touched. The cell is still replaced by the source (that is how the hidden tests
# come back); only the message changes: silent when the submitted cell is exactly the
# released one, a clear warning when a student edited a read-only cell.
class SdOverwriteCells(OverwriteCells):
    """nbgrader's OverwriteCells, quiet about test cells that are as released."""

    def preprocess(self, nb, resources):
        meta = resources["nbgrader"]
        path = os.path.join(str(course.RELEASE), meta["assignment"], meta["notebook"] + ".ipynb")
        self._released = {}
        if os.path.isfile(path):
            for cell in nbformat.read(path, as_version=4).cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if gid:
                    self._released[gid] = _nbutils.compute_checksum(cell)
        return super().preprocess(nb, resources)

    def report_change(self, name, attr, old, new):
        if attr != "checksum":
            return super().report_change(name, attr, old, new)
        if self._released.get(name) == new:
            self.log.debug("cell %s is as released; restored from the source with its hidden tests", name)
        else:
            self.log.warning("read-only cell %s was edited in the submission; graded with the "
                             "source's version of the cell", name)


c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec,
                                      SdOverwriteCells, CheckCellMetadata]


# Student names. Students who are not on the roster (`python -m graders.grade roster FILE.csv`)
# are created by autograde without a name, which the Formgrader shows as "None, None". Such a
# student is listed under their id instead: last name = the id, first name = "(not on the
# roster)". Importing the roster afterwards replaces both with the real names.
NOT_ON_ROSTER = "(not on the roster)"


def name_unrostered(student=None, **_):
    """Autograde's post-convert hook (the Formgrader's button and `make autograde`)."""
    from nbgrader.api import Gradebook

    with Gradebook(c.CourseDirectory.db_url, c.CourseDirectory.course_id) as gb:
        one = student and not any(ch in student for ch in "*?[")
        for s in ([gb.find_student(student)] if one else gb.students):
            if not s.first_name and not s.last_name:
                gb.update_or_create_student(s.id, last_name=s.id, first_name=NOT_ON_ROSTER)


c.Autograde.post_convert_hook = name_unrostered

# The exchange. This course collects with `make collect`, not through nbgrader's exchange; a
# missing exchange (/srv/nbgrader/exchange) makes every Formgrader request log "Unwritable
# directory" and every page warn. The exchange is a folder in the grading workspace instead, so
# the Formgrader's release/collect buttons work on this machine. Creating it here also creates
# the workspace, where the Formgrader opens the gradebook (a fresh clone has neither).
c.Exchange.root = os.path.join(str(course.WORKSPACE), "exchange")
os.makedirs(c.Exchange.root, exist_ok=True)


# The Formgrader's "Generate" button writes the release exactly as `make assignments` does
# (the students' banner, no outputs, no widget state: graders/grade.py).
def normalise_release(assignment=None, **_):
    """GenerateAssignment's post-convert hook."""
    from graders import grade

    if assignment in course.assignments():
        grade._normalise_release(assignment)


c.GenerateAssignment.post_convert_hook = normalise_release

# The Formgrader's "Current configuration" panel cannot show a config with classes and hooks
# (it logs "Formgrader config is not serializable" on every visit); this file is the config.
c.FormgradeExtension.debug = False
