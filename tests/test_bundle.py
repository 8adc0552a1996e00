"""What students receive (notebooks/, data/, the sdcourse package) holds no solution code,
no hidden test, no grader code, no outputs or widget state of the reference run, and no
function that solves an exercise in one call; the wheel ships only sdcourse."""
from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import os
import pkgutil
import re
import select
import signal
import sys
import time
import tomllib
import types
from pathlib import Path

import pytest
import torch

import sdcourse
from graders import course
from graders import submissions as subs
from graders.checks import bundle, runtime

ROOT = Path(__file__).resolve().parents[1]
STUDENT_TREES = ["notebooks", "sdcourse", "data"]
FORBIDDEN = [re.compile(p) for p in (r"BEGIN SOLUTION", r"END SOLUTION", r"BEGIN HIDDEN TESTS",
                                      r"\bfrom graders\b", r"\bimport graders\b")]
LESSONS = course.lessons()
IDS = [l.assignment for l in LESSONS]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


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


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_release_carries_no_outputs_or_widget_state(lesson):
    """The reference run's outputs and saved widget state (images the reference solution drew)
    must not reach students: no outputs, no execution counts, no widget metadata or views."""
    text = lesson.release.read_text()
    for needle in ("application/vnd.jupyter.widget-state+json", "application/vnd.jupyter.widget-view+json",
                   '"image/png"'):
        assert needle not in text, f"{lesson.release.name} contains {needle!r}"
    nb = subs.read(lesson.release)
    assert "widgets" not in nb.metadata, f"{lesson.release.name} carries saved widget state in its metadata"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{lesson.release.name} cell {i} carries outputs of the reference run"
            assert cell.execution_count is None, f"{lesson.release.name} cell {i} carries an execution count"
        assert "widgets" not in cell.metadata, f"{lesson.release.name} cell {i} carries widget metadata"


# --------------------------------------------------------------------------- one-call solutions

#: Build tooling that must never be *called* by a test: it trains models, writes files, spawns
#: processes or benchmarks for minutes. None of these takes an exercise's inputs (they take
#: paths, step counts, whole pipelines), so leaving them out weakens nothing.
UNSAFE = re.compile(r"^(main|train\w*|write\w*|update_\w*|render_all|build\w*|evaluate_all|load_and_memory|"
                    r"sampling_time|pipeline_adherence|_start|_wait|set_threads|seed_everything|quiet_libraries)$")
#: A candidate gets max(MIN_SECONDS, SLOWER x the reference's time) per check input: one that
#: solved the exercise would run about as fast as the reference does on the same input.
MIN_SECONDS, SLOWER = 1.5, 10


def _sdcourse_callables() -> list[tuple[str, object]]:
    """Every function and class defined at module level in every module of the student
    package (private names included: ``from sdcourse.tiny.evaluate import _x`` works too)."""
    names = ["sdcourse"] + [m.name for m in pkgutil.walk_packages(sdcourse.__path__, "sdcourse.")]
    found = []
    for name in names:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == name \
                    and not UNSAFE.match(attr) and not (name == "sdcourse" and attr == "__getattr__"):
                found.append((f"{name}.{attr}", value))
    return found


def _hidden_calls(lesson) -> list[tuple[str, str, tuple[str, ...]]]:
    """(test grade id, check name, student object names) of every hidden check line."""
    out = []
    for cell in subs.read(lesson.source).cells:
        if not subs.is_test(cell):
            continue
        for block in HIDDEN.findall(cell.source):
            for line in block.splitlines():
                node = ast.parse(line.strip()).body[0] if line.strip().startswith("hidden.check") else None
                if node is not None:
                    call = node.value
                    out.append((subs.grade_id(cell), call.args[0].value, tuple(a.id for a in call.args[1:])))
    return out


def _reference_objects(lesson) -> types.ModuleType:
    """The lesson's setup and reference solution cells, executed as a notebook would (the
    reference objects fill the other slots of a check that takes several)."""
    main = types.ModuleType("__main__")
    threads = torch.get_num_threads()
    with subs._as_main(main), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import matplotlib

        matplotlib.use("Agg")
        for kind, gid, code in subs.lesson_cells(lesson.key):
            if kind in ("setup", "solution"):
                exec(compile(code, f"<{gid or 'setup'}>", "exec"), main.__dict__)
    torch.set_num_threads(threads)
    return main


class _Stop(Exception):
    pass


class _Recorder:
    """Stands in for a student object and records the arguments of the first call."""

    def __init__(self):
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        raise _Stop


def _fits(annotation, value) -> bool:
    """False when a parameter's annotation (a string: the package uses postponed annotations)
    plainly excludes the value, e.g. ``n: int`` given a tensor; unannotated parameters and
    annotations this does not understand accept anything."""
    if not isinstance(annotation, str):
        return True
    plain = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
             "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
             "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
             "None": lambda v: v is None,
             "torch.Tensor": lambda v: isinstance(v, torch.Tensor),
             "nn.Module": lambda v: isinstance(v, torch.nn.Module),
             "torch.nn.Module": lambda v: isinstance(v, torch.nn.Module),
             "Path": lambda v: isinstance(v, (str, Path))}
    prefixed = {("dict", "Mapping"): lambda v: isinstance(v, dict),
                ("list", "tuple"): lambda v: isinstance(v, (list, tuple)),
                ("Sequence", "Iterable"): lambda v: isinstance(v, (list, tuple, torch.Tensor)),
                ("Callable",): callable}

    def one(option: str) -> bool:
        if option in plain:
            return plain[option](value)
        for prefixes, test in prefixed.items():
            if option.startswith(prefixes):
                return test(value)
        return True

    return any(one(o.strip()) for o in annotation.replace(" ", "").split("|"))


def _accepts(fn, args: tuple, kwargs: dict) -> bool:
    """The candidate's signature binds these arguments, and no annotation excludes them."""
    try:
        sig = inspect.signature(fn)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD) and not _fits(param.annotation, value):
            return False
    return True


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop a candidate that runs longer than ``seconds`` (in the forked child only), but only
    while the candidate's own (``sdcourse``) code is on the stack and no import is in progress;
    otherwise the stop is retried 50 ms later."""
    def stop(signum, frame):
        in_candidate, f = False, frame
        while f is not None:
            if "importlib._bootstrap" in f.f_code.co_filename:
                in_candidate = False
                break
            if str(f.f_globals.get("__name__", "")).startswith("sdcourse"):
                in_candidate = True
            f = f.f_back
        if in_candidate:
            raise TimeoutError(f"took more than {seconds:.0f} s")
        signal.setitimer(signal.ITIMER_REAL, 0.05)

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _in_child(jobs: list[tuple[str, object]], seconds: float) -> dict[str, bool] | None:
    """Run ``jobs`` ([(label, job() -> bool)]) one after the other in a forked copy of this
    process, each stopped after ``seconds``; the last job is the positive control. Returns
    {label: result} (a job that raised or ran out of time: False), or None when the child
    died or overran. Nothing a job changes (a shared model, a patched library) reaches this
    process."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one torch thread (a forked OpenMP pool is not reused), no output
        try:
            os.close(read)
            torch.set_num_threads(1)
            sys.stdout = sys.stderr = io.StringIO()
            with os.fdopen(write, "w") as out:
                for label, job in jobs:
                    try:
                        with _time_limit(seconds):
                            ok = bool(job())
                    except BaseException:  # noqa: BLE001 - a failing candidate solves nothing
                        ok = False
                    out.write(f"{label}\t{int(ok)}\n")
                    out.flush()
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + seconds * len(jobs) + 60
    buf = b""
    try:
        while True:
            ready, _, _ = select.select([read], [], [], 0.05)
            if ready:
                chunk = os.read(read, 1 << 16)
                if chunk:
                    buf += chunk
                    continue
                os.waitpid(pid, 0)            # end of file: the child is done
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
    finally:
        os.close(read)
    results = {}
    for line in buf.decode().splitlines():
        label, _, flag = line.rpartition("\t")
        results[label] = flag == "1"
    return results if len(results) == len(jobs) else None


def _verdict(check, run, inputs, objects) -> str | None:
    """None when the hidden check would give these objects its points (on this input), else
    why not."""
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            packed = runtime.call(run, inputs, objects, check.forbid)
        out = runtime.unpack(packed)
        if runtime.is_error(out):
            return str(out["__error__"])
        with runtime.quiet():
            check.compare(inputs, out)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not solved"
        return f"{type(exc).__name__}: {exc}"
    finally:
        torch.set_num_threads(threads)
        import matplotlib.pyplot as plt

        plt.close("all")


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_no_exercise_is_solvable_by_one_sdcourse_call(lesson):
    """No function or class of the student package earns an exercise's points on its own.

    Method: every hidden check names the student objects it grades (``hidden.check("name",
    obj, ...)``), makes fresh inputs, runs the objects on them (its sandbox-side ``run_*``) and
    compares the result with the library oracle (``compare``): exactly the judgement that gives
    a test cell its points. For every student object we first run each of its checks once with
    a recorder in the object's place, which captures the arguments the check passes (positional
    and keyword). Then every callable defined in an ``sdcourse`` module (all of them, private
    names included, minus build tooling that trains or writes files) whose signature accepts
    those arguments replaces the object, the other slots keeping the reference solution's
    objects, and runs through all of that object's checks on their first input, with the same
    oracles forbidden as in grading. A candidate that passes them all would solve the exercise
    part in one call: the test fails and names it. A candidate is stopped after a few times the
    reference's running time; "accepts" also means that no annotation of the candidate rules
    the arguments out (``n: int`` given a tensor).

    Isolation and controls: the candidates of one object run in a forked copy of the test
    process (nothing they change reaches the test, or the next lesson), followed by the
    reference object itself as a positive control; if the control fails there, a candidate
    spoiled the shared state (a model, a patched library), and every candidate is run again in
    a child of its own. The reference must also pass in this process before its candidates.
    """
    checks = lesson.checks().CHECKS
    module = bundle.load(lesson.key)
    reference = _reference_objects(lesson)
    by_object: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for _, name, objects in _hidden_calls(lesson):
        for obj in objects:
            by_object.setdefault(obj, []).append((name, objects))

    def fresh(inputs):
        return runtime.unpack(runtime.pack(inputs))

    def slots(objects, obj, value):
        return tuple(value if o == obj else getattr(reference, o) for o in objects)

    plans = {}                     # object -> [(check, run, inputs, objects, first call)]
    for obj, uses in sorted(by_object.items()):
        runs = []
        for name, objects in uses:
            check = checks[name]
            run = getattr(module, check.run.__name__)
            inputs = check.make_inputs(check.seeds[0])
            recorder = _Recorder()
            with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                run(fresh(inputs), *slots(objects, obj, recorder))
            assert recorder.calls, f"{lesson.key}: check {name!r} never called {obj}"
            runs.append((check, run, inputs, objects, recorder.calls[0]))
        plans[obj] = runs

    def reference_passes(obj, runs) -> list[float]:
        seconds = []
        for check, run, inputs, objects, _ in runs:
            start = time.perf_counter()
            why = _verdict(check, run, fresh(inputs), slots(objects, obj, getattr(reference, obj)))
            seconds.append(time.perf_counter() - start)
            assert why is None, f"{lesson.key}: the reference {obj} fails check {check.name!r} in this harness: {why}"
        return seconds

    def job(obj, runs, value):
        return lambda: all(_verdict(check, run, fresh(inputs), slots(objects, obj, value)) is None
                           for check, run, inputs, objects, _ in runs)

    candidates = _sdcourse_callables()
    solved, tried = [], 0
    for obj, runs in plans.items():
        seconds = sum(max(MIN_SECONDS, SLOWER * t) for t in reference_passes(obj, runs))
        jobs = [(label, job(obj, runs, c)) for label, c in candidates
                if all(_accepts(c, *call) for *_, call in runs)]
        tried += len(jobs)
        control = ("<reference>", job(obj, runs, getattr(reference, obj)))
        results = _in_child(jobs + [control], seconds)
        if results is None or not results["<reference>"]:
            # a candidate spoiled the state the later ones ran on: give each a fresh child
            results = {label: (_in_child([(label, j), control], seconds) or {}).get(label, False)
                       for label, j in jobs}
        for label, ok in results.items():
            if ok and label != "<reference>":
                solved.append(f"{label} solves {obj} (checks {', '.join(c.name for c, *_ in runs)})")
    print(f"{lesson.key}: {len(plans)} student objects, {tried} candidate calls tried")
    assert not solved, "the student package solves exercises in one call:\n" + "\n".join(solved)
