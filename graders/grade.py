"""The grading driver behind ``make assignments / collect / autograde / feedback / grades``.

    python -m graders.grade release   [-a A]               # solutions/ -> notebooks/ (+ gradebook)
    python -m graders.grade collect   DIR                  # DIR/<student>/[<assignment>/]*.ipynb
    python -m graders.grade autograde [-a A] [-s S] [--force]
    python -m graders.grade feedback  [-a A] [-s S]
    python -m graders.grade grades    [--out FILE]         # CSV: totals + per-exercise columns

It wraps nbgrader's Python API (``NbGraderAPI``) one submission at a time, so that one broken
submission (malformed JSON, no notebook, a kernel that dies) is reported by name while everyone
else is graded, and nothing wrong is left in the gradebook. Each submission's status lives in
one place, the ``sdcourse_grading`` table next to the gradebook (``graders.status``);
``autograde-report.csv`` and the status column of ``grades.csv`` are written from it.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from graders import course
from graders.status import StatusStore

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
MAX_NOTEBOOK_BYTES = 20 * 2**20


def _config():
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(course.GRADERS)).load_config())
    config.NbGraderAPI.log_level = "WARN"
    return config


def _api():
    """NbGraderAPI configured from graders/nbgrader_config.py (quiet logs). Changes nothing
    outside itself: the process environment is set once, by :func:`main`."""
    import warnings

    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy autoflush chatter
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    course.WORKSPACE.mkdir(exist_ok=True)
    config = _config()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _store(api=None) -> StatusStore:
    course.WORKSPACE.mkdir(exist_ok=True)
    return StatusStore((api.coursedir.db_url if api is not None else _config().CourseDirectory.db_url))


# --------------------------------------------------------------------------- release

BANNER = ("> **Your copy of lesson {aid}.** Fill in every cell marked `# YOUR CODE HERE` or "
          "`YOUR ANSWER HERE`, run the test cells below each exercise, and hand in this file. "
          "(It is generated from the instructor's source, `solutions/{aid}/{name}`, by "
          "`make assignments`: instructors edit that file, not this one.)")


def release(only: str | None = None) -> int:
    api = _api()
    failed = 0
    for aid in course.assignments():
        if only and aid != only:
            continue
        result = api.generate_assignment(aid, force=True)
        if not result["success"]:
            failed += 1
            print(f"FAILED  {aid}\n{result.get('error') or result.get('log')}")
            continue
        _normalise_release(aid)
        print(f"released {aid} -> notebooks/{aid}/")
    return 1 if failed else 0


def _normalise_release(aid: str) -> None:
    """Make notebooks/ byte-stable and clean: a banner for students, no outputs, no saved
    widget state, no nbval markers, stable cell ids (tests compare it with a fresh generation)."""
    import nbformat

    for path in sorted((course.RELEASE / aid).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        banner = BANNER.format(aid=aid, name=path.name)
        if nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("> "):
            nb.cells[0].source = banner
        else:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(banner))
        nb.metadata.pop("widgets", None)
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i:03d}"
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
                cell.source = "\n".join(l for l in cell.source.split("\n")
                                        if l.strip() != "# NBVAL_CHECK_OUTPUT")
            cell.metadata.pop("execution", None)
        nbformat.write(nb, str(path))


# --------------------------------------------------------------------------- collect

def _notebooks(folder: Path) -> tuple[list[Path], list[str]]:
    """Regular .ipynb files under ``folder`` (no symlinks followed); and what was refused."""
    found, refused = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if d != ".ipynb_checkpoints"
                       and not (Path(dirpath) / d).is_symlink()]
        for name in filenames:
            p = Path(dirpath) / name
            if not name.endswith(".ipynb"):
                continue
            if p.is_symlink() or not p.is_file():
                refused.append(f"{p.relative_to(folder)} (a link, not a file)")
            else:
                found.append(p)
    return sorted(found), refused


def _assignment_of(path: Path, student_dir: Path, known: list[str]) -> str | None:
    """The assignment a notebook belongs to: its folder's name, its file name, or a file name
    that contains an assignment id or its number (``Copy of 6-3-2-...``, ``6-3-2 (1).ipynb``)."""
    rel = path.relative_to(student_dir)
    for part in rel.parts[:-1]:
        if part in known:
            return part
    if path.stem in known:
        return path.stem
    matches = [a for a in known if a in path.stem] or \
              [a for a in known if re.search(rf"(?<!\d){re.escape(a[:5])}(?!\d)", path.stem)]
    return matches[0] if len(matches) == 1 else None


def collect(src: Path) -> int:
    """Copy students' notebooks into the workspace: DIR/<student>/[<assignment>/]<nb>.ipynb.

    Refused: symlinks, files that are not notebooks, oversized files, unsafe student ids.
    A single notebook with another name is collected under the right name and the rename is
    reported; several notebooks for one assignment are reported, not guessed."""
    known = course.assignments()
    store = _store()
    count, notes = 0, []
    for student_dir in sorted(p for p in src.iterdir() if p.is_dir() or p.is_symlink()):
        sid = student_dir.name
        if student_dir.is_symlink():
            notes.append(f"refused {sid}/: a link, not a folder")
            continue
        if not SAFE_ID.match(sid):
            notes.append(f"refused {sid!r}: a student id is letters, digits and . _ @ + -")
            continue
        found, refused = _notebooks(student_dir)
        notes += [f"{sid}: refused {r}" for r in refused]
        by_aid: dict[str, list[Path]] = defaultdict(list)
        for nb in found:
            aid = _assignment_of(nb, student_dir, known)
            if aid is None:
                notes.append(f"{sid}: skipped {nb.relative_to(student_dir)}: not a notebook of this course")
            else:
                by_aid[aid].append(nb)
        for aid, paths in sorted(by_aid.items()):
            dest = course.WORKSPACE / "submitted" / sid / aid / f"{aid}.ipynb"
            names = ", ".join(str(p.relative_to(student_dir)) for p in paths)
            if len(paths) > 1:
                store.record(aid, sid, "failed", f"several notebooks for one assignment ({names}); "
                             "keep one and collect again")
                notes.append(f"{sid}/{aid}: NOT collected: several notebooks ({names})")
                continue
            data = _read_regular(paths[0])
            if data is None:
                notes.append(f"{sid}/{aid}: refused {names} (not a regular file under "
                             f"{MAX_NOTEBOOK_BYTES // 2**20} MiB)")
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            for old in dest.parent.glob("*.ipynb"):
                old.unlink()
            dest.write_bytes(data)
            renamed = paths[0].name != dest.name
            detail = f"collected from {names}" if renamed else ""
            store.record(aid, sid, "pending", detail)
            if renamed:
                notes.append(f"{sid}/{aid}: collected {names} as {dest.name}")
            count += 1
    for n in notes:
        print("  " + n)
    print(f"collected {count} notebook(s) into {course.WORKSPACE / 'submitted'}")
    return 0


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file, refusing links and oversized files (no link followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        import stat

        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_NOTEBOOK_BYTES:
            return None
        return f.read(MAX_NOTEBOOK_BYTES + 1)


# --------------------------------------------------------------------------- roster

def roster(path: Path) -> int:
    """Add the students of a roster CSV (``student`` or ``id``, optional ``first_name``,
    ``last_name``, ``email``) to nbgrader's student table: the course's roster. Autograde gives
    every student on it who submitted nothing a recorded 0 ("no submission")."""
    api = _api()
    added = 0
    with path.open(newline="") as f, api.gradebook as gb:
        for row in csv.DictReader(f):
            sid = (row.get("student") or row.get("id") or "").strip()
            if not SAFE_ID.match(sid):
                print(f"  skipped {sid!r}: a student id is letters, digits and . _ @ + -")
                continue
            gb.update_or_create_student(sid, **{k: row[k].strip() for k in ("first_name", "last_name", "email")
                                                if row.get(k)})
            added += 1
    print(f"roster: {added} student(s) in the gradebook")
    return 0


def _roster_gaps(api, store: StatusStore, aid_filter=None, sid_filter=None) -> list:
    """Record "no submission" for every rostered student with nothing collected."""
    out = []
    with api.gradebook as gb:
        students = [s.id for s in gb.students]
    for aid in course.assignments():
        if aid_filter and aid != aid_filter:
            continue
        for sid in students:
            if sid_filter and sid != sid_filter:
                continue
            if (course.WORKSPACE / "submitted" / sid / aid).exists():
                continue
            prev = store.get(aid, sid)
            if prev is None or prev.status in ("no submission", "pending"):
                out.append(store.record(aid, sid, "no submission", "nothing was collected"))
    return out


# --------------------------------------------------------------------------- autograde

def _submissions(aid_filter=None, sid_filter=None) -> list[tuple[str, str]]:
    base = course.WORKSPACE / "submitted"
    out = []
    for sdir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for adir in sorted(p for p in sdir.iterdir() if p.is_dir()):
            if (aid_filter and adir.name != aid_filter) or (sid_filter and sdir.name != sid_filter):
                continue
            out.append((sdir.name, adir.name))
    return out


def _precheck(student: str, aid: str) -> tuple[str | None, str]:
    """(problem, note): problems nbgrader would choke on, found before it touches the
    gradebook; a single notebook with another name is renamed (and the note says so)."""
    folder = course.WORKSPACE / "submitted" / student / aid
    expected = sorted(p.name for p in (course.RELEASE / aid).glob("*.ipynb"))
    entries = sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
    links = [p.name for p in entries if p.is_symlink()]
    if links:
        return f"refused: {', '.join(links)} is a link, not a file", ""
    present = [p.name for p in entries if p.suffix == ".ipynb" and p.is_file()]
    note = ""
    if len(expected) == 1 and len(present) > 1:
        return (f"several notebooks ({', '.join(present)}); expected one, {expected[0]}: keep one "
                "and collect again"), ""
    if len(expected) == 1 and len(present) == 1 and present[0] != expected[0]:
        (folder / present[0]).rename(folder / expected[0])
        note = f"graded {present[0]} as {expected[0]}"
        present = expected
    if not any(name in present for name in expected):
        found = [p.name for p in entries]
        return (f"no notebook submitted (expected {', '.join(expected)}; found "
                f"{', '.join(found) or 'nothing'})"), ""
    for name in present:
        nb = folder / name
        if nb.stat().st_size > MAX_NOTEBOOK_BYTES:
            return f"{name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB", note
        try:
            json.loads(nb.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"malformed notebook {name} ({type(exc).__name__}: {exc})", note
    return None, note


def content_hash(student: str, aid: str) -> str:
    """What a grade depends on: the submission, the source notebook and the lesson's checks."""
    lesson = course.lesson(aid)
    h = hashlib.sha256()
    for path in sorted((course.WORKSPACE / "submitted" / student / aid).glob("*.ipynb")) + [
            lesson.source, lesson.checks_path, course.GRADERS / "checks" / "common.py",
            course.GRADERS / "checks" / "runtime.py"]:
        h.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return h.hexdigest()


def _first_error_line(text: str) -> str:
    keys = ("DeadKernelError", "Kernel died", "kernel died", "CellTimeoutError",
            "UnresponsiveKernelError", "NotJSONError", "Error:")
    for line in (text or "").splitlines():
        if any(k in line for k in keys):
            return line.strip()[:200]
    lines = [l for l in (text or "").splitlines() if l.strip()]
    return lines[-1].strip()[:200] if lines else "unknown error"


def autograde(aid_filter=None, sid_filter=None, force: bool = False, no_sandbox: bool = False,
              jobs: int | None = None, scheduler: str | None = None) -> int:
    """Grade every collected submission that is not graded yet (or changed since), ``jobs`` at a
    time, each in its own sandbox; one writer (this process) records the grades.

    Phase A (parallel, on Dask workers: a LocalCluster here, or ``scheduler``'s cluster) runs
    and scores each submission (``graders.autograde.score_raw``); its result is saved under
    ``workspace/scored/`` as soon as it arrives. Phase B (here, one at a time) lets nbgrader
    write the gradebook from that result. An interrupted batch loses no finished grade, and a
    re-run reuses every saved result."""
    from graders import autograde as scoring, sandbox

    if no_sandbox:
        os.environ["SDCOURSE_NO_SANDBOX"] = "1"
        print("WARNING: --no-sandbox: submissions run WITHOUT isolation (they can read and write "
              "anything this user can). Scores are still computed outside the student's kernel.")
    else:
        ok, why = sandbox.check()
        if not ok:
            print(f"cannot grade: no sandbox ({why}).\nInstall bubblewrap (`make setup-grading`), "
                  "or see README 'Grading without bubblewrap'; `--no-sandbox` grades without "
                  "isolation, on your responsibility.", file=sys.stderr)
            return 2
        bad = sandbox.unreadable_runtime()
        if bad:
            print(f"cannot grade: {sandbox.unreadable_message(bad)}.", file=sys.stderr)
            return 2
    cores = os.cpu_count() or 1
    jobs = max(1, jobs or cores)
    api = _api()
    store = _store(api)
    known = set(course.assignments())
    done, todo = [], []
    for student, aid in _submissions(aid_filter, sid_filter):
        if aid not in known:
            done.append(store.record(aid, student, "failed", f"unknown assignment {aid!r}"))
            continue
        prev = store.get(aid, student)
        collect_note = prev.detail if prev is not None and prev.status == "pending" else ""
        problem, note = _precheck(student, aid)
        digest = content_hash(student, aid)
        if problem:
            _forget(api, aid, student)
            done.append(store.record(aid, student, "failed", problem, digest))
            continue
        if not force and prev is not None and prev.status == "graded" and prev.content_hash == digest:
            continue  # graded already, nothing changed
        if force:
            shutil.rmtree(course.WORKSPACE / "scored" / student / aid, ignore_errors=True)
        todo.append((student, aid, digest, [n for n in (collect_note, note) if n]))
    todo = _longest_first(todo, store)
    cfg = _config().SandboxScore
    options = dict(use_sandbox=not no_sandbox, cell_timeout=int(cfg.cell_timeout),
                   budget=int(cfg.budget_seconds), threads=1)
    started = {key: time.perf_counter() for key in [(s, a) for s, a, _, _ in todo]}
    progress = _progress(len(todo))
    interrupted = False
    # Ctrl-C: while one submission is being recorded (nbgrader's API swallows exceptions, and a
    # half-written record must not happen), only note it; stop after that record, or at once
    # while waiting for the sandboxed jobs.
    sigint = {"seen": False, "recording": False}

    def _on_sigint(signum, frame):
        sigint["seen"] = True
        if not sigint["recording"]:
            raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_sigint) if main_thread else None
    try:
        for (student, aid, digest, notes), result, error in _phase_a(todo, jobs, scheduler, options):
            t_phase_a = time.perf_counter() - started[(student, aid)]
            sigint["recording"] = True
            try:
                if error is not None:
                    _forget(api, aid, student)
                    status = store.record(aid, student, "failed", f"grading error: {error}", digest, t_phase_a)
                else:
                    for name, res in result.items():
                        scoring.save(scoring.result_path(aid, student, name), res["digest"],
                                     scoring.Scored(**res["scored"]))
                    status = _phase_b(api, store, student, aid, digest, notes, t_phase_a)
            finally:
                sigint["recording"] = False
            done.append(status)
            progress.update(status.ok)
            if sigint["seen"]:
                raise KeyboardInterrupt
        done += _roster_gaps(api, store, aid_filter, sid_filter)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: every grade recorded so far is kept; run the same command to finish.",
              file=sys.stderr)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        progress.close()
        write_report(store)
    bad = [s for s in done if not s.ok]
    print(f"\nautograded {len(done) - len(bad)} of {len(done)} submission(s)"
          + (f" ({len(todo) - len(done)} left for the next run)" if interrupted else "")
          + f"; {len(store.all())} in the report ({course.WORKSPACE / 'autograde-report.csv'})")
    for s in done:
        print(f"  {'ok  ' if s.ok else 'FAIL'}  {s.student:20s} {s.assignment:40s} {s.seconds:6.1f} s  {s.line()}")
    if bad:
        print(f"\n{len(bad)} submission(s) need attention (their files are kept in "
              f"graders/workspace/submitted/; nothing was recorded for them in the gradebook).")
    return 130 if interrupted else 0


def _longest_first(todo: list, store: StatusStore) -> list:
    """The batch ordered by expected grading time, longest first, so that no worker is left
    with a long submission while the others sit idle at the end. The estimate of an
    assignment is the median time of its earlier grades (the status table) when every
    assignment of the batch has some, else the size of its release notebook (the heavier
    lessons take longer)."""
    past: dict[str, list[float]] = {}
    for st in store.all():
        if st.status == "graded" and st.seconds > 0:
            past.setdefault(st.assignment, []).append(st.seconds)
    aids = {item[1] for item in todo}
    if aids <= set(past):
        cost = {aid: sorted(past[aid])[len(past[aid]) // 2] for aid in aids}
    else:
        cost = {aid: float(sum(p.stat().st_size for p in (course.RELEASE / aid).glob("*.ipynb"))) for aid in aids}
    return sorted(todo, key=lambda item: cost[item[1]], reverse=True)


def _submitted_notebooks(student: str, aid: str) -> dict[str, bytes]:
    folder = course.WORKSPACE / "submitted" / student / aid
    names = [p.stem for p in (course.RELEASE / aid).glob("*.ipynb")]
    return {n: (folder / f"{n}.ipynb").read_bytes() for n in names if (folder / f"{n}.ipynb").is_file()}


def _phase_a(todo, jobs: int, scheduler: str | None, options: dict):
    """Yield ((student, aid, digest, notes), result, error) as each submission is scored."""
    from graders import autograde as scoring

    if not todo:
        return
    if jobs == 1 and not scheduler:
        for item in todo:
            student, aid = item[0], item[1]
            try:
                yield item, scoring.score_raw(aid, _submitted_notebooks(student, aid), slot=0, **options), None
            except Exception as exc:  # noqa: BLE001 - one broken submission never stops the batch
                yield item, None, f"{type(exc).__name__}: {exc}"
        return
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None if scheduler else LocalCluster(
        n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR, memory_limit=0)
    client = Client(scheduler or cluster)
    try:
        futures = {}
        for item in todo:
            student, aid = item[0], item[1]
            fut = client.submit(scoring.score_raw, aid, _submitted_notebooks(student, aid), pure=False,
                                key=f"score-{student}-{aid}-{item[2][:12]}", **options)
            futures[fut] = item
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                yield item, fut.result(), None
            except Exception as exc:  # noqa: BLE001
                yield item, None, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _phase_b(api, store: StatusStore, student: str, aid: str, digest: str, notes: list[str],
             seconds: float):
    """Record one scored submission in the gradebook (nbgrader, this process only)."""
    from graders import autograde as scoring

    t0 = time.perf_counter()
    result = api.autograde(aid, student, force=True, create=True)
    took = seconds + time.perf_counter() - t0
    if result["success"]:
        return store.record(aid, student, "graded", "; ".join(notes + scoring.load_notes(aid, student)),
                            digest, took)
    _forget(api, aid, student)
    why = _first_error_line((result.get("error") or "") + "\n" + (result.get("log") or ""))
    return store.record(aid, student, "failed", why, digest, took)


class _progress:
    """tqdm progress bar: done / failed / remaining, with an ETA."""

    def __init__(self, total: int):
        self.failed = 0
        self.bar = None
        if total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="submission", dynamic_ncols=True, file=sys.stderr,
                            disable=os.environ.get("SDCOURSE_PROGRESS", "1") == "0")
            self.bar.set_postfix(failed=0)

    def update(self, ok: bool) -> None:
        if self.bar is not None:
            self.failed += not ok
            self.bar.set_postfix(failed=self.failed)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _forget(api, aid: str, student: str) -> None:
    """Remove a failed submission from the gradebook so no bogus score is recorded."""
    from nbgrader.api import MissingEntry

    with api.gradebook as gb:
        try:
            gb.remove_submission(aid, student)
        except MissingEntry:
            pass


def write_report(store: StatusStore) -> Path:
    """``autograde-report.csv``: a view of the status table."""
    path = course.WORKSPACE / "autograde-report.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["student", "assignment", "status", "seconds", "updated"])
        w.writeheader()
        for s in store.all():
            w.writerow({"student": s.student, "assignment": s.assignment, "status": s.line(),
                        "seconds": s.seconds, "updated": s.updated})
    return path


# --------------------------------------------------------------------------- feedback

def feedback(aid_filter=None, sid_filter=None) -> int:
    api = _api()
    failed = 0
    base = course.WORKSPACE / "autograded"
    for sdir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for adir in sorted(p for p in sdir.iterdir() if p.is_dir()):
            if (aid_filter and adir.name != aid_filter) or (sid_filter and sdir.name != sid_filter):
                continue
            result = api.generate_feedback(adir.name, sdir.name, force=True)
            ok = result["success"]
            failed += not ok
            print(f"  {'ok  ' if ok else 'FAIL'}  {sdir.name:20s} {adir.name}"
                  + ("" if ok else f"  {_first_error_line(result.get('error') or result.get('log'))}"))
    print(f"feedback written under {course.WORKSPACE / 'feedback'}")
    return 1 if failed else 0


# --------------------------------------------------------------------------- grades

def grade_table(db_url: str | None = None):
    """Rows of {student, assignment, status, ex1.., total, max} from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    db_url = db_url or _config().CourseDirectory.db_url
    store = StatusStore(db_url)
    status = {(s.student, s.assignment): s for s in store.all()}
    rows = []
    with Gradebook(db_url) as gb:
        students = sorted({s.id for s in gb.students} | {s for s, _ in status})
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            maxima: dict[str, float] = defaultdict(float)
            for nb in assignment.notebooks:
                for cell in nb.grade_cells:
                    maxima[course.exercise_of(cell.name)] += cell.max_score
            for student in students:
                row = {"student": student, "assignment": assignment.name}
                st = status.get((student, assignment.name))
                try:
                    sub = gb.find_submission(assignment.name, student)
                except MissingEntry:
                    none = st is not None and st.status == "no submission"
                    row.update(status=st.line() if st else "not submitted", total=0 if none else "",
                               max=sum(maxima.values()), **({ex: 0 for ex in maxima} if none else {}))
                    rows.append(row)
                    continue
                per = defaultdict(float)
                pending = False
                for nb in sub.notebooks:
                    for grade in nb.grades:
                        per[course.exercise_of(grade.name)] += grade.score or 0.0
                        pending |= bool(grade.needs_manual_grade)
                for ex in maxima:
                    row[ex] = round(per[ex], 3)
                row.update(status=(st.line() if st else "graded")
                           + ("; manual grading pending" if pending else ""),
                           total=round(sub.score, 3), max=sub.max_score)
                rows.append(row)
    store.close()
    return rows


def grades(out: Path) -> int:
    rows = grade_table()
    exercises = []
    for r in rows:
        for k in r:
            if k not in ("student", "assignment", "status", "total", "max") and k not in exercises:
                exercises.append(k)
    fields = ["student", "assignment", "total", "max", "status"] + sorted(exercises)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out} ({len(rows)} rows; columns: {', '.join(fields)})")
    return 0


# --------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="generate notebooks/ from solutions/")
    r.add_argument("-a", "--assignment")
    c = sub.add_parser("collect", help="copy submissions into the grading workspace")
    c.add_argument("src", type=Path)
    a = sub.add_parser("autograde", help="grade every collected submission")
    a.add_argument("-a", "--assignment")
    a.add_argument("-s", "--student")
    a.add_argument("--force", action="store_true", help="regrade submissions already graded")
    a.add_argument("--no-sandbox", action="store_true",
                   help="run submissions without isolation (only where bubblewrap cannot run)")
    a.add_argument("-j", "--jobs", type=int, help="submissions graded at a time (default: every core)")
    a.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786) to grade on its "
                   "workers instead of a local cluster")
    f = sub.add_parser("feedback", help="write HTML feedback for autograded submissions")
    f.add_argument("-a", "--assignment")
    f.add_argument("-s", "--student")
    ro = sub.add_parser("roster", help="add a roster CSV's students to the gradebook")
    ro.add_argument("csv", type=Path)
    g = sub.add_parser("grades", help="export grades.csv (totals + per-exercise)")
    g.add_argument("--out", type=Path, default=course.WORKSPACE / "grades.csv")
    args = ap.parse_args(argv)
    # The one place this process's environment is set: nbgrader's kernels inherit it.
    os.environ.update(course.instructor_env())
    if args.cmd == "release":
        return release(args.assignment)
    if args.cmd == "collect":
        if not args.src.is_dir():
            print(f"no such folder: {args.src}", file=sys.stderr)
            return 2
        return collect(args.src)
    if args.cmd == "autograde":
        return autograde(args.assignment, args.student, args.force, args.no_sandbox, args.jobs,
                         args.scheduler)
    if args.cmd == "feedback":
        return feedback(args.assignment, args.student)
    if args.cmd == "roster":
        return roster(args.csv)
    return grades(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
