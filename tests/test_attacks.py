"""Cheats, faults and harm to others (graders/attacks) against the real grading commands:
``grade collect`` then ``grade autograde -j 2`` in a throw-away course copy, each submission in
its own sandbox. Every attack gets its expected outcome, and after the batch: no course file
changed, a classmate graded before the attackers is untouched, no process is left running,
every submission is in the report."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from graders import attacks, course
from graders import submissions as subs
from graders.status import StatusStore

pytestmark = pytest.mark.slow
AID = attacks.ASSIGNMENT
# Limits of this batch, tighter than the defaults (60 s a cell, 600 s a notebook) to keep the
# suite short, with room for the setup cell's imports on a loaded CI machine (over 10 s seen).
CELL_TIMEOUT, BUDGET = 25, 150
NAP = 20         # seconds each sleepy cell sleeps: just under the cell limit, 13 of them exceed the budget
UID = 63000 + os.getpid() % 900   # this run's sandboxes only (other runs may share the machine)


def _grade(copy: Path, *args: str, **env_extra) -> subprocess.CompletedProcess:
    env = course.instructor_env()
    env.update(PYTHONPATH=str(copy), SDCOURSE_CELL_TIMEOUT=str(CELL_TIMEOUT), SDCOURSE_NOTEBOOK_BUDGET=str(BUDGET),
               SDCOURSE_PROGRESS="0", SDCOURSE_SANDBOX_UID=str(UID),
               SDCOURSE_SANDBOX_MEMORY_MB="2560", **env_extra)
    env.pop("SDCOURSE_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "graders.grade", *args], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=3000)


def _tree_hash(*roots: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and not any(s in p.parts for s in skip) and "__pycache__" not in p.parts:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class _Listener:
    """A TCP server on the grading machine's loopback that counts connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def _scores(copy: Path, student: str):
    return subs.cell_scores(copy, AID, student)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    copy = subs.copy_course(tmp_path_factory.mktemp("attacks"))
    res = _grade(copy, "release", "-a", AID)
    assert res.returncode == 0, res.stdout + res.stderr
    source = subs.read(copy / "solutions" / AID / f"{AID}.ipynb")
    release = subs.read(copy / "notebooks" / AID / f"{AID}.ipynb")
    listener = _Listener()
    fmt = dict(root=str(copy), aid=AID, port=listener.port, victim=attacks.VICTIM, nap=NAP)
    downloads = tmp_path_factory.mktemp("downloads")
    # the classmate is graded first, so the attackers have something to harm
    victim_nb = attacks.lean(subs.fill(release, subs.reference_answers(source)))
    subs.write(victim_nb, downloads / "first" / attacks.VICTIM / f"{AID}.ipynb")
    assert _grade(copy, "collect", str(downloads / "first")).returncode == 0
    res = _grade(copy, "autograde", "-a", AID, "-s", attacks.VICTIM, "-j", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    victim_before = _tree_hash(copy / "graders" / "workspace" / "autograded" / attacks.VICTIM,
                               copy / "graders" / "workspace" / "submitted" / attacks.VICTIM)
    victim_scores = _scores(copy, attacks.VICTIM)
    for attack in attacks.ATTACKS:
        folder = downloads / "all" / attack.name
        folder.mkdir(parents=True)
        layout, nb = attacks.build(attack, source, release, **fmt)
        target = folder / f"{AID}.ipynb"
        if layout == "normal":
            subs.write(nb, target)
        elif layout == "misnamed":
            subs.write(nb, folder / f"Copy of {AID}.ipynb")
        elif layout == "two":
            subs.write(nb, target)
            subs.write(release, folder / f"{AID} draft.ipynb")
        elif layout == "symlink-solution":
            target.symlink_to(copy / "solutions" / AID / f"{AID}.ipynb")
        elif layout == "symlink-passwd":
            target.symlink_to("/etc/passwd")
        elif layout == "malformed":
            target.write_bytes(b'{"cells": [ this is not json')
    course_before = _tree_hash(copy / "solutions", copy / "notebooks", copy / "graders",
                               course.PACKAGE, skip=("workspace",))
    collected = _grade(copy, "collect", str(downloads / "all"))
    graded = _grade(copy, "autograde", "-a", AID, "-j", "2")
    leftovers = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    leftovers = [l for l in leftovers.splitlines() if l.split() and UID <= int(l.split()[0]) < UID + 100]
    return dict(copy=copy, collected=collected, graded=graded, listener=listener, leftovers=leftovers,
                victim_before=victim_before, victim_scores=victim_scores, course_before=course_before)


def _status(copy: Path, student: str):
    store = StatusStore(subs.gradebook_url(copy))
    try:
        return store.get(AID, student)
    finally:
        store.close()


def test_the_batch_completes_and_reports_everyone(batch):
    assert batch["graded"].returncode == 0, batch["graded"].stdout + batch["graded"].stderr
    report = (batch["copy"] / "graders" / "workspace" / "autograde-report.csv").read_text()
    for attack in attacks.ATTACKS:
        if attack.status != "not collected":
            assert attack.name in report, f"{attack.name} missing from the report:\n{report}"


@pytest.mark.parametrize("attack", attacks.ATTACKS, ids=[a.name for a in attacks.ATTACKS])
def test_outcome(batch, attack):
    copy = batch["copy"]
    out = batch["graded"].stdout + batch["collected"].stdout
    if attack.status == "not collected":
        assert not (copy / "graders" / "workspace" / "submitted" / attack.name).exists(), (
            f"{attack.name}: {attack.why}: it was collected")
        assert "refused" in batch["collected"].stdout, batch["collected"].stdout
        return
    status = _status(copy, attack.name)
    assert status is not None, f"{attack.name}: no status recorded\n{out}"
    assert status.status == attack.status, f"{attack.name}: {status.line()}\n{out}"
    if attack.detail:
        phrases = [p.strip().lower() for p in attack.detail.split("|")]
        assert any(p in status.detail.lower() for p in phrases), f"{attack.name}: {status.line()}"
    scores = _scores(copy, attack.name)
    if attack.expect == "none":
        assert scores is None, f"{attack.name} left a grade in the gradebook"
        return
    assert scores, f"{attack.name}: nothing in the gradebook ({status.line()})"
    got = sum(s for s, _ in scores.values())
    top = sum(m for _, m in scores.values())
    stub = sum(s for s, _ in _scores(copy, "control-stub").values())
    if attack.expect == "full":
        assert got == top, f"{attack.name} ({attack.why}): {got}/{top}: {scores}\n{status.line()}"
    elif attack.expect.startswith("full-but:"):
        part = attack.expect.split(":", 1)[1]
        for cell, (s, m) in scores.items():
            wanted = 0 if course.part_of(cell) == part else m
            assert s == wanted, f"{attack.name} ({attack.why}): {cell} {s}/{m}, expected {wanted}"
    elif attack.expect == "zero":
        assert got == 0, f"{attack.name} ({attack.why}) earned {got}: {scores}"
    else:
        assert got <= stub, f"{attack.name} ({attack.why}) earned {got}, more than an honest stub ({stub})"


def test_the_stub_control_earns_only_the_shape_cells(batch):
    scores = _scores(batch["copy"], "control-stub")
    earned = {k for k, (s, _) in scores.items() if s}
    assert earned and all("shape" in k or "structure" in k for k in earned), scores


def test_no_course_file_changed(batch):
    copy = batch["copy"]
    after = _tree_hash(copy / "solutions", copy / "notebooks", copy / "graders", course.PACKAGE,
                       skip=("workspace",))
    changed = [k for k in set(after) | set(batch["course_before"]) if after.get(k) != batch["course_before"].get(k)]
    assert not changed, changed


def test_the_classmate_is_untouched(batch):
    copy = batch["copy"]
    after = _tree_hash(copy / "graders" / "workspace" / "autograded" / attacks.VICTIM,
                       copy / "graders" / "workspace" / "submitted" / attacks.VICTIM)
    assert after == batch["victim_before"]
    assert _scores(copy, attacks.VICTIM) == batch["victim_scores"]
    assert all(s == m for s, m in batch["victim_scores"].values())


def test_nothing_outlives_its_submission_and_nothing_got_out(batch):
    assert batch["leftovers"] == [], batch["leftovers"]
    assert batch["listener"].connections == 0, "a submission reached the grading machine's loopback"


def test_the_autograded_flood_is_small(batch):
    nb = batch["copy"] / "graders" / "workspace" / "autograded" / "output-flood" / AID / f"{AID}.ipynb"
    assert nb.stat().st_size < 2 * 2**20, nb.stat().st_size
