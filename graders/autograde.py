"""Score a submission outside the student's process (instructor-only).

nbgrader still does what it does well (overwrite the test cells from the source, write the
gradebook, make feedback), but its ``Execute`` step is replaced by :class:`SandboxScore`
(``graders/nbgrader_config.py``), which

1. **prepares** the notebook: every hidden block of a test cell, taken from the SOURCE
   notebook (never from the submission), becomes a call to the sandbox's recorder
   (``__grader__.run(grade_id, k, lesson, check, <student objects>)``);
2. **runs** it in a sandbox (``graders.sandbox``) with the executor (``sandbox_exec.py``), the
   lesson's run functions (``graders.checks.bundle``) and the packed inputs of every check;
   only packed plain data comes back;
3. **scores** it here: each test cell passes when every hidden check it calls compares equal
   with the library oracle on the data the sandbox returned (``Checks.judge``). Nothing the
   kernel says about itself (its outputs, errors, hooks, printed text) decides a score;
4. **writes** trusted outputs into the test cells (a pass line, or an error naming the
   misconception) for nbgrader's ``SaveAutoGrades`` and the feedback; other cells keep the
   kernel's outputs, trimmed, for the student to read.

:func:`score_submission` does 1-3 for one notebook and returns a :class:`Scored` result that
can be computed anywhere (a worker) and applied later by the one gradebook writer.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from graders import course, sandbox
from graders import submissions as subs
from graders.checks import bundle
from graders.checks.common import CheckFailed

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS\n?", re.S)
FILE = re.compile(r"^(?P<gid>[A-Za-z0-9_]+)/(?P<k>\d+)/(?P<seed>\d+)\.st$")
STARTUP = ("import sys as _sys\n_sys.path.insert(0, {grader!r})\n"
           "from sdgrade_runtime import Recorder as _Recorder\n"
           "__grader__ = _Recorder({inbox!r}, {grader!r}, {outbox!r})\n"
           "del _sys, _Recorder\n")
PASS_TEXT = "passed: the hidden tests ran your code on fresh inputs and it agrees with the reference\n"
MAX_SUBMISSION_BYTES = 20 * 2**20


@dataclass(frozen=True)
class CheckCall:
    grade_id: str
    k: int
    lesson: str
    name: str
    args: tuple[str, ...]


def check_calls(source_nb, key: str) -> dict[str, list[CheckCall]]:
    """grade_id -> the hidden checks its test cell calls, from the (trusted) source notebook."""
    calls: dict[str, list[CheckCall]] = {}
    for cell in source_nb.cells:
        if not subs.is_test(cell):
            continue
        gid = subs.grade_id(cell)
        m = HIDDEN.search(cell.source)
        found = []
        if m:
            for node in ast.parse(m.group(1)).body:
                call = getattr(node, "value", None)
                if isinstance(call, ast.Call) and ast.unparse(call.func) == "hidden.check":
                    found.append(CheckCall(gid, len(found), key, call.args[0].value,
                                           tuple(ast.unparse(a) for a in call.args[1:])))
        calls[gid] = found
    return calls


def prepare(nb, source_nb, calls: dict[str, list[CheckCall]]):
    """A copy of the (sanitised) submission whose test cells are the source's, with each hidden
    block replaced by recorder calls. Cells the student deleted are restored from the source."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    source_tests = {subs.grade_id(c): c for c in source_nb.cells if subs.is_test(c)}
    present = {subs.grade_id(c) for c in nb.cells}
    for gid, cell in source_tests.items():  # nbgrader restores these too (add_missing_cells)
        if gid not in present:
            nb.cells.append(nbformat.from_dict(json.loads(json.dumps(cell))))
    for cell in nb.cells:
        gid = subs.grade_id(cell)
        if gid in source_tests and cell.cell_type == "code":
            lines = "".join(f"__grader__.run({c.grade_id!r}, {c.k}, {c.lesson!r}, {c.name!r}"
                            + "".join(f", {a}" for a in c.args) + ")\n" for c in calls.get(gid, []))
            cell.source = HIDDEN.sub(lambda _: lines, source_tests[gid].source)
            cell.outputs = []
        elif cell.cell_type == "code":
            cell.outputs = []
    return nb


def _inputs_dir(key: str) -> Path:
    """Packed inputs of every check of a lesson, made once per version of its checks."""
    h = hashlib.sha256()
    for p in (course.lesson(key).checks_path, course.GRADERS / "checks" / "common.py",
              course.GRADERS / "checks" / "runtime.py"):
        h.update(p.read_bytes())
    folder = course.WORKSPACE / "cache" / "inputs" / f"{key}-{h.hexdigest()[:16]}"
    done = folder / ".complete"
    if not done.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent))
        checks = course.lesson(key).checks().CHECKS
        for name in checks.names():
            for seed, data in checks.inputs(name).items():
                (tmp / key / name).mkdir(parents=True, exist_ok=True)
                (tmp / key / name / f"{seed}.st").write_bytes(data)
        (tmp / ".complete").write_text("ok")
        try:
            tmp.rename(folder)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
        if not done.exists():
            raise RuntimeError(f"could not write the inputs cache {folder}")
    return folder


@dataclass
class Scored:
    """The outcome of one notebook, computed outside the gradebook (picklable, JSON-able)."""
    notebook: str
    verdicts: dict[str, list]                 # grade_id -> [passed, message]
    cells: dict[str, dict] = field(default_factory=dict)   # str(index) -> executor record
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sandboxed: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Scored":
        return cls(**json.loads(text))


def run_prepared(prepared, key: str, *, use_sandbox: bool = True, slot: int = 0,
                 cell_timeout: int = 60, budget: int = 900, threads: int | None = None,
                 limits: sandbox.Limits | None = None):
    """Execute a prepared notebook (in the sandbox) and return (cells, files, notes, seconds)."""
    limits = limits or sandbox.Limits(wall_seconds=budget + 60)
    with tempfile.TemporaryDirectory(prefix="sdgrade-") as tmp:
        job = Path(tmp) / "job"
        job.mkdir()
        inputs = _inputs_dir(key)
        shutil.copytree(inputs / key, job / "inbox" / key)
        bundle.write(key, job)
        shutil.copy(Path(__file__).with_name("sandbox_exec.py"), job / "sandbox_exec.py")
        if use_sandbox:
            grader, scratch = "/grader", "/sandbox"
        else:
            grader, scratch = str(job), str(Path(tmp) / "scratch")
            Path(scratch).mkdir()
        nbformat.write(prepared, str(job / "notebook.ipynb"))
        (job / "job.json").write_text(json.dumps({
            "notebook": f"{grader}/notebook.ipynb", "cell_timeout": cell_timeout,
            "budget_seconds": budget, "scratch": scratch,
            "startup": STARTUP.format(grader=grader, inbox=f"{grader}/inbox", outbox=f"{scratch}/outbox")}))
        for p in job.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        job.chmod(0o755)
        Path(tmp).chmod(0o755)
        n = str(threads or 1)   # small tensors: one thread is fastest, and J sandboxes share the cores
        env = {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TOKENIZERS_PARALLELISM": "false", "SDCOURSE_DEVICE": "cpu", "OMP_NUM_THREADS": n,
               "MKL_NUM_THREADS": n, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "agg",
               "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, f"{grader}/sandbox_exec.py", f"{grader}/job.json"]
        if use_sandbox:
            res = sandbox.run(argv, job, limits, slot=slot, env=env)
        else:
            res = _run_unsandboxed(argv, scratch, env, limits)
    return _parse(res)


def _run_unsandboxed(argv, scratch, env, limits) -> sandbox.Result:
    import subprocess

    full = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    full.update(env, HOME=scratch)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=scratch, env=full, capture_output=True, timeout=limits.wall_seconds)
        return sandbox.Result(p.returncode, p.stdout, p.stderr[-20000:], time.perf_counter() - t0)
    except subprocess.TimeoutExpired as exc:
        return sandbox.Result(None, exc.stdout or b"", b"", time.perf_counter() - t0, timed_out=True)


def _parse(res: sandbox.Result):
    cells: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    notes = list(res.notes)
    finished = False
    for line in res.stdout.splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(rec, dict):
            continue
        kind = rec.get("type")
        if kind == "cell" and isinstance(rec.get("index"), int):
            cells[str(rec["index"])] = {"status": str(rec.get("status", ""))[:20],
                                        "seconds": float(rec.get("seconds") or 0),
                                        "outputs": rec.get("outputs") if isinstance(rec.get("outputs"), list) else []}
        elif kind == "file" and isinstance(rec.get("path"), str) and FILE.match(rec["path"]):
            try:
                files[rec["path"]] = base64.b64decode(rec.get("data", ""), validate=True)
            except (ValueError, TypeError):
                pass
        elif kind == "note" and rec.get("text") != "executor started":
            notes.append(str(rec.get("text"))[:300])
        elif kind == "done":
            finished = True
    if res.timed_out:
        notes.append("the submission used its whole time budget and was stopped")
    elif not finished:
        notes.append("the grading run stopped early" + (f" (exit {res.returncode})" if res.returncode else ""))
    if res.truncated:
        notes.append("the submission printed too much; the rest was dropped")
    return cells, files, notes, res.seconds


def score(key: str, calls: dict[str, list[CheckCall]], files: dict[str, bytes], cells: dict,
          prepared) -> dict[str, list]:
    """grade_id -> [passed, message] from the returned data (trusted comparisons only)."""
    checks = course.lesson(key).checks().CHECKS
    index = {subs.grade_id(c): i for i, c in enumerate(prepared.cells)}
    verdicts: dict[str, list] = {}
    for gid, cs in calls.items():
        message = ""
        if not cs:
            message = "this test cell has no hidden check; ask your instructor"
        for c in cs:
            outputs = {}
            for seed in checks[c.name].seeds:
                outputs[seed] = files.get(f"{gid}/{c.k}/{seed}.st")
            try:
                if any(v is None for v in outputs.values()):
                    raise CheckFailed(_why_not_run(cells.get(str(index.get(gid, -1)))))
                checks.judge(c.name, outputs)
            except CheckFailed as exc:
                message = str(exc)
                break
            except Exception as exc:  # noqa: BLE001 - a broken comparison must not pass
                message = f"the grader could not compare your result ({type(exc).__name__}: {exc})"
                break
        verdicts[gid] = [not message, message]
    return verdicts


def _why_not_run(record: dict | None) -> str:
    if not record:
        return "the hidden test did not run: the notebook stopped before this cell"
    status = record.get("status")
    if status == "timeout":
        return "this cell ran longer than the time limit and was stopped"
    if status == "killed":
        return "the kernel died while running this cell (out of memory, or the process was killed)"
    if status == "skipped":
        return "the notebook used its whole time budget before reaching this cell"
    for out in record.get("outputs", []):
        if out.get("output_type") == "error":
            if out.get("ename") == "NotImplementedError":
                return "not implemented yet: the code this test needs still raises NotImplementedError"
            return (f"the cell stopped before its hidden test: {str(out.get('ename'))[:80]}: "
                    f"{str(out.get('evalue'))[:600]}")
    return "the hidden test did not run"


def score_submission(nb, source_nb, key: str, name: str = "", **run_kw) -> Scored:
    """Prepare, run and score one notebook (the sanitised submission)."""
    t0 = time.perf_counter()
    calls = check_calls(source_nb, key)
    prepared = prepare(nb, source_nb, calls)
    cells, files, notes, _ = run_prepared(prepared, key, **run_kw)
    for i, rec in cells.items():  # which source each record belongs to (outputs are display only)
        if 0 <= int(i) < len(prepared.cells):
            rec["sha"] = _sha(prepared.cells[int(i)].source)
    verdicts = score(key, calls, files, cells, prepared)
    for i, rec in cells.items():
        if rec["status"] in ("timeout", "killed"):
            gid = subs.grade_id(prepared.cells[int(i)]) or f"cell {i}"
            notes.append(f"{gid}: {'stopped for time' if rec['status'] == 'timeout' else 'kernel died'}")
    return Scored(name, verdicts, cells, notes, time.perf_counter() - t0,
                  run_kw.get("use_sandbox", True))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def apply(nb, scored: Scored) -> None:
    """Write the outcome into the notebook nbgrader is autograding (in place)."""
    by_gid = scored.verdicts
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = subs.grade_id(cell)
        if gid in by_gid and subs.is_test(cell):
            passed, message = by_gid[gid]
            if passed:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=PASS_TEXT)]
            else:
                cell.outputs = [nbformat.v4.new_output(
                    "error", ename="AssertionError", evalue=message,
                    traceback=[f"\x1b[0;31mAssertionError\x1b[0m: {message}"])]
            cell.execution_count = None
            continue
        rec = scored.cells.get(str(i))
        if rec is not None and rec.get("sha") not in (None, _sha(cell.source)):
            rec = None  # another cell at this position (the notebook was reordered): show nothing
        outs = []
        for out in (rec or {}).get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue  # never scored; keeps feedback readable
            try:
                outs.append(nbformat.from_dict(out))
            except Exception:  # noqa: BLE001 - untrusted: drop what does not parse
                pass
        try:
            cell.outputs = outs
            nbformat.validate(nbformat.v4.new_notebook(cells=[cell]))
        except Exception:  # noqa: BLE001
            cell.outputs = []
        cell.execution_count = None


# --------------------------------------------------------------------------- nbgrader hook

def result_path(assignment: str, student: str, notebook: str) -> Path:
    return course.WORKSPACE / "scored" / student / assignment / f"{notebook}.json"


def save(path: Path, digest: str, scored: Scored) -> None:
    """Write a result atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": digest, "scored": asdict(scored)}))
    os.replace(tmp, path)


def load_notes(assignment: str, student: str) -> list[str]:
    """The notes of the last scoring of every notebook of a submission."""
    notes = []
    for path in sorted((course.WORKSPACE / "scored" / student / assignment).glob("*.json")):
        try:
            notes += json.loads(path.read_text())["scored"]["notes"]
        except (ValueError, KeyError, OSError):
            pass
    return notes


def execution_digest(nb, key: str) -> str:
    """What a notebook's score depends on: the code the student controls (every code cell that
    is not a test cell, in order), the lesson's source notebook and its checks. The raw
    submission and nbgrader's sanitised copy of it have the same digest."""
    lesson = course.lesson(key)
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and not subs.is_test(cell):
            h.update(b"\0cell\0" + str(cell.get("source", "")).encode())
    for p in (lesson.source, lesson.checks_path, course.GRADERS / "checks" / "common.py",
              course.GRADERS / "checks" / "runtime.py", Path(__file__)):
        h.update(p.read_bytes())
    return h.hexdigest()


try:
    from nbgrader.preprocessors import NbGraderPreprocessor
    from traitlets import Bool, Integer

    class SandboxScore(NbGraderPreprocessor):
        """nbgrader's autograde step, executed in a sandbox and scored outside it."""

        cell_timeout = Integer(60, help="seconds a cell may run").tag(config=True)
        budget_seconds = Integer(900, help="seconds a whole notebook may run").tag(config=True)
        use_sandbox = Bool(True, help="run submissions in bubblewrap (False: no isolation)").tag(config=True)

        def preprocess(self, nb, resources):
            meta = resources["nbgrader"]
            aid, sid, name = meta["assignment"], meta["student"], meta["notebook"]
            lesson = course.lesson(aid)
            source_nb = subs.read(lesson.source)
            digest = execution_digest(nb, lesson.key)
            path = result_path(aid, sid, name)
            scored = None
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                    if data.get("digest") == digest:
                        scored = Scored.from_json(json.dumps(data["scored"]))
                except (ValueError, KeyError, TypeError):
                    scored = None
            if scored is None:
                scored = score_submission(nb, source_nb, lesson.key, name, use_sandbox=self.use_sandbox,
                                          cell_timeout=self.cell_timeout, budget=self.budget_seconds)
                save(path, digest, scored)
            apply(nb, scored)
            resources.setdefault("sdcourse", {})["notes"] = scored.notes
            resources["sdcourse"]["sandboxed"] = scored.sandboxed
            return nb, resources
except ImportError:  # pragma: no cover - nbgrader is installed with the course
    pass


# --------------------------------------------------------------------------- workers

def worker_slot() -> int:
    """A small integer per grading worker (each slot runs its sandboxes as its own uid)."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    if isinstance(name, int) or str(name).isdigit():
        return int(name) % 900
    import zlib

    return zlib.crc32(str(name).encode()) % 900


def score_raw(assignment: str, notebooks: dict[str, bytes], *, use_sandbox: bool = True,
              cell_timeout: int = 60, budget: int = 900, threads: int | None = None,
              slot: int | None = None) -> dict[str, dict]:
    """Score the notebooks of one raw submission (name -> bytes): the unit of work a grading
    worker runs. Returns name -> {"digest", "scored"}, which the gradebook writer saves and
    :class:`SandboxScore` applies. Needs the course files and the venv, not the workspace."""
    import torch

    torch.set_num_threads(1)   # the trusted comparisons are small; the cores belong to the sandboxes
    lesson = course.lesson(assignment)
    source_nb = subs.read(lesson.source)
    slot = worker_slot() if slot is None else slot
    out = {}
    for name, data in notebooks.items():
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        for cell in nb.cells:  # what nbgrader's ClearOutput does before it executes
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        scored = score_submission(nb, source_nb, lesson.key, name, use_sandbox=use_sandbox,
                                  cell_timeout=cell_timeout, budget=budget, threads=threads, slot=slot)
        out[name] = {"digest": execution_digest(nb, lesson.key), "scored": asdict(scored)}
    return out
