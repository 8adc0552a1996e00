"""Grading a whole class: parallel sandboxes, interrupted and resumed batches, a roster, and
past one machine on Dask distributed with the gradebook on PostgreSQL (a real server and a
real scheduler with separate worker processes, started here).

The grades a batch must end with are known in advance: the same cells run in-process
(graders.submissions.run_in_process, the same checks and the same scoring code) give each test
cell's pass or fail."""
from __future__ import annotations

import csv
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graders import attacks, course
from graders import submissions as subs
from graders.status import StatusStore

pytestmark = pytest.mark.slow
AID = attacks.ASSIGNMENT
KEY = course.lesson(AID).key
REQUIRE = os.environ.get("SDCOURSE_REQUIRE_ALL") == "1"   # set by .ci/run: never skip here


def _need(ok: bool, why: str):
    if not ok:
        if REQUIRE:
            pytest.fail(why)
        pytest.skip(why)


def _env(copy: Path, **extra) -> dict:
    env = course.instructor_env()
    env.update(PYTHONPATH=str(copy), SDCOURSE_CELL_TIMEOUT="20", SDCOURSE_PROGRESS="0", **extra)
    env.pop("SDCOURSE_DB_URL", None)
    env.update({k: v for k, v in extra.items()})
    return env


def _grade(copy: Path, *args: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graders.grade", *args], cwd=copy, env=_env(copy, **extra),
                          capture_output=True, text=True, timeout=2400)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _submissions(copy: Path, n: int):
    """n lean submissions of lesson 6-3-2 (reference, blank, and known-wrong answers in turn)
    and the per-cell outcome each must get."""
    source = subs.read(copy / "solutions" / AID / f"{AID}.ipynb")
    release = subs.read(copy / "notebooks" / AID / f"{AID}.ipynb")
    ref = subs.reference_answers(source)
    mutants = subs.load_lesson(KEY).mutants
    kinds = [("reference", ref), ("blank", None)] + [(m.name, subs.apply(ref, [m])) for m in mutants]
    out, expected_by_kind = {}, {}
    for i in range(n):
        kind, answers = kinds[i % len(kinds)]
        nb = attacks.lean(release if answers is None else subs.fill(release, answers))
        out[f"s{i:02d}-{kind}"] = nb
        if kind not in expected_by_kind:
            if answers is None:
                blank = {subs.grade_id(c): subs.strip_markers(c.source) for c in release.cells if subs.is_solution(c)}
                res = subs.run_in_process(KEY, blank)
            else:
                res = subs.run_in_process(KEY, answers)
            expected_by_kind[kind] = {gid: msg is None for gid, msg in res.items()}
    expected = {sid: expected_by_kind[sid.split("-", 1)[1]] for sid in out}
    return out, expected


def _write(copy: Path, nbs: dict) -> None:
    for sid, nb in nbs.items():
        subs.write(nb, copy / "graders" / "workspace" / "submitted" / sid / AID / f"{AID}.ipynb")


def _passes(db_url: str):
    """student -> {grade_id: passed} from the gradebook."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url) as gb:
        for sub in gb.assignment_submissions(AID):
            out[sub.student.id] = {g.name: g.score == g.max_score for nb in sub.notebooks
                                   for g in nb.grades if g.cell.cell_type == "code"}
    return out


@pytest.fixture()
def copy(tmp_path):
    dest = subs.copy_course(tmp_path / "course")
    res = _grade(dest, "release", "-a", AID)
    assert res.returncode == 0, res.stdout + res.stderr
    return dest


def test_an_interrupted_batch_resumes_to_the_same_grades(copy):
    nbs, expected = _submissions(copy, 8)
    _write(copy, nbs)
    db = subs.gradebook_url(copy)
    proc = subprocess.Popen([sys.executable, "-m", "graders.grade", "autograde", "-a", AID, "-j", "2"],
                            cwd=copy, env=_env(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 1200
    graded_before = []
    while time.time() < deadline and proc.poll() is None:
        time.sleep(2)
        if (copy / "graders" / "workspace" / "gradebook.db").exists():
            store = StatusStore(db)
            graded_before = [s for s in store.all() if s.status == "graded"]
            store.close()
            if len(graded_before) >= 3:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the instructor's terminal
                break
    out, _ = proc.communicate(timeout=600)
    assert len(graded_before) >= 3 and len(graded_before) < len(nbs), out
    assert proc.returncode == 130, out
    assert "interrupted" in out
    store = StatusStore(db)
    kept = {(s.student, s.updated) for s in store.all() if s.status == "graded"}
    store.close()
    assert kept >= {(s.student, s.updated) for s in graded_before}, "a finished grade was lost"
    res = _grade(copy, "autograde", "-a", AID, "-j", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    store = StatusStore(db)
    after = {s.student: s for s in store.all()}
    store.close()
    for student, updated in kept:   # graded once, never again
        assert after[student].updated == updated, f"{student} was graded again after the resume"
    assert all(s.status == "graded" for s in after.values()), after
    assert _passes(db) == expected
    # a third run has nothing left to do
    res = _grade(copy, "autograde", "-a", AID, "-j", "2")
    assert "autograded 0 of 0" in res.stdout, res.stdout


def test_no_sandbox_grades_like_the_sandbox(copy):
    """``--no-sandbox`` runs the same executor outside bubblewrap, in a scratch folder of its own:
    the kernel's records must come back from there (they once were looked for at the sandbox's
    /sandbox/outbox, and every autograded test scored 0)."""
    nbs, expected = _submissions(copy, 3)   # the reference, a blank one, a known-wrong answer
    _write(copy, nbs)
    res = _grade(copy, "autograde", "-a", AID, "-j", "2", "--no-sandbox")
    assert res.returncode == 0 and "WARNING: --no-sandbox" in res.stdout, res.stdout + res.stderr
    got = _passes(subs.gradebook_url(copy))
    assert got == expected, (got, expected)
    assert all(got["s00-reference"].values()), got["s00-reference"]


def test_the_sandbox_refuses_a_course_runtime_its_user_cannot_read(tmp_path, monkeypatch, capsys):
    """A rebuild of the tiny models wrote weights of mode 0600 (diffusers and transformers save
    through a temporary file): inside the sandbox, as another user, every lesson that loads a
    model failed, and every submission lost those marks. Grading now stops before it starts,
    naming the files and the fix; the build itself makes its outputs readable."""
    from graders import sandbox
    from sdcourse.tiny import common

    root = tmp_path / "data"
    weights = root / "models" / "weights.safetensors"
    weights.parent.mkdir(parents=True)
    root.chmod(0o755)
    weights.write_bytes(b"x")
    weights.chmod(0o600)
    assert sandbox.unreadable_runtime([root]) == [f"{weights} (mode 0600)"]
    common.readable_by_all(root / "models")
    assert sandbox.unreadable_runtime([root]) == []
    (root / "models").chmod(0o700)
    assert sandbox.unreadable_runtime([root]) == [f"{root / 'models'} (mode 0700)"]
    assert sandbox.unreadable_runtime() == [], "the course's own runtime is not readable by the sandbox"
    # the batch refuses at once, the sandbox on every run
    monkeypatch.setattr(sandbox, "unreadable_runtime", lambda roots=None, limit=5: [f"{weights} (mode 0600)"])
    with pytest.raises(sandbox.SandboxUnavailable, match="chmod -R a[+]rX"):
        sandbox.run(["true"], tmp_path)
    _need(*sandbox.check())
    from graders import grade

    assert grade.autograde(AID) == 2   # returns before it reads a submission or the gradebook
    err = capsys.readouterr().err
    assert "cannot grade: the sandbox's user cannot read" in err and "weights.safetensors (mode 0600)" in err, err


def test_roster_students_without_a_submission_get_a_recorded_zero(copy, tmp_path):
    nbs, _ = _submissions(copy, 1)
    _write(copy, nbs)
    roster = tmp_path / "roster.csv"
    roster.write_text("student,first_name,last_name,email\n"
                      f"{next(iter(nbs))},Ada,Lovelace,ada@example.org\nabsent,Alan,Turing,alan@example.org\n")
    assert _grade(copy, "roster", str(roster)).returncode == 0
    res = _grade(copy, "autograde", "-a", AID, "-j", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "grades.csv"
    assert _grade(copy, "grades", "--out", str(out)).returncode == 0
    rows = {r["student"]: r for r in csv.DictReader(out.open()) if r["assignment"] == AID}
    assert rows["absent"]["status"].startswith("no submission"), rows["absent"]
    assert float(rows["absent"]["total"]) == 0 and float(rows["absent"]["ex1"]) == 0


# ---------------------------------------------------------------- PostgreSQL + Dask distributed

@pytest.fixture()
def postgres():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    _need(bool(bins), "PostgreSQL server binaries are not installed (apt-get install postgresql; "
                      ".ci/run does it)")
    _need(os.geteuid() == 0, "starting PostgreSQL here needs root (to run it as the postgres user)")
    bindir = Path(bins[-1]).parent
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="sdcourse-pg-"))   # the postgres user must reach it
    data.chmod(0o700)
    shutil.chown(data, "postgres", "postgres")
    run = ["runuser", "-u", "postgres", "--"]
    subprocess.run(run + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    port = _free_port()
    subprocess.run(run + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                          f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE sdcourse")
    conn.close()
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/sdcourse"
    finally:
        subprocess.run(run + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture()
def cluster(copy):
    """A Dask scheduler and two worker processes, started as separate programs (as on a
    grading cluster), working on the shared course folder."""
    port = _free_port()
    env = _env(copy)
    dask = [sys.executable, "-m", "distributed.cli"]
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              cwd=copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    addr = f"tcp://127.0.0.1:{port}"
    for name in ("0", "1"):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr,
                                       "--nthreads", "1", "--nworkers", "1", "--name", name,
                                       "--memory-limit", "0", "--dashboard-address", ":0"],
                                      cwd=copy, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    del dask
    from distributed import Client

    client = Client(addr, timeout=60)
    client.wait_for_workers(2, timeout=120)
    client.close()
    try:
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_dask_cluster_grades_into_postgresql(copy, postgres, cluster, tmp_path):
    nbs, expected = _submissions(copy, 4)
    _write(copy, nbs)
    extra = {"SDCOURSE_DB_URL": postgres}
    res = _grade(copy, "release", "-a", AID, **extra)   # the assignment, in the PostgreSQL gradebook
    assert res.returncode == 0, res.stdout + res.stderr
    res = _grade(copy, "autograde", "-a", AID, "--scheduler", cluster, **extra)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _passes(postgres) == expected
    assert not (copy / "graders" / "workspace" / "gradebook.db").exists() or \
        not _passes(subs.gradebook_url(copy)), \
        "grades went to SQLite, not PostgreSQL"
    store = StatusStore(postgres)
    assert {s.student for s in store.all() if s.status == "graded"} == set(nbs)
    store.close()
    out = tmp_path / "grades.csv"
    res = _grade(copy, "grades", "--out", str(out), **extra)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len([r for r in csv.DictReader(out.open()) if r["assignment"] == AID]) == len(nbs)
