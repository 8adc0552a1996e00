"""Rerunnable benchmarks (``make bench``): what the course costs on this machine.

    python -m graders.bench [-a ASSIGNMENT] [--only lessons,grading,class,resume] [--repeat N]

* **lessons**: per lesson, how long its reference notebook takes to execute beyond kernel
  start-up, the kernel's peak memory, the slowest cell, and how long autograding one reference
  submission takes (``grade autograde -j 1``: sandbox start, execution, scoring, gradebook),
  with and without the sandbox (the isolation's overhead);
* **grading**: throughput of a batch of reference submissions of every lesson, graded with one
  worker and with two (``-j 1`` / ``-j 2``): submissions per minute, per core, the speed-up, and
  the projection for 1,000 notebooks on a 16-core machine;
* **class**: one student's notebooks of every lesson, autograded together (``-j`` = every core);
* **resume**: a batch of lean submissions graded without interruption, and the same batch
  interrupted (SIGINT) half-way and resumed: same grades?
* lesson extras the lessons print too: the batched [uncond, cond] U-Net call against two calls
  (6-3-4) and the U-Net's FLOPs at latent vs pixel resolution (6-3-5), when those lessons exist.

Results go to ``bench/results.md`` (and stdout). Not a test: the numbers depend on the machine
and on what else runs on it. The targets live in the README and the issues.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from graders import attacks, course
from graders import submissions as subs

ROOT = course.ROOT
# the kernel's own peak in MB (VmHWM; ru_maxrss would count the bench process the kernel was
# forked from); the import adds nothing to it, every lesson has loaded torch by then
PEAK_RSS = "from sdcourse.tiny.common import peak_rss_mb; print(peak_rss_mb())"


def execute_timed(path: Path) -> dict:
    """Kernel start-up, then every cell; returns seconds and the kernel's peak RSS (MB)."""
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_RSS))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel(env=course.instructor_env()):
        t1 = time.perf_counter()
        slowest = (0.0, -1)
        for i, cell in enumerate(nb.cells):
            c0 = time.perf_counter()
            client.execute_cell(cell, i)
            slowest = max(slowest, (time.perf_counter() - c0, i))
        t2 = time.perf_counter()
    out = nb.cells[-1].outputs[0]["text"].strip()
    return {"kernel_start_s": t1 - t0, "execute_s": t2 - t1, "peak_rss_mb": float(out),
            "slowest_cell": f"cell {slowest[1]} ({slowest[0]:.1f} s)"}


class Course:
    """A throw-away copy of the course with its releases generated."""

    def __init__(self, aids: list[str]):
        self.tmp = tempfile.TemporaryDirectory(prefix="sdcourse-bench-")
        self.copy = subs.copy_course(Path(self.tmp.name))
        for aid in aids:
            self.grade("release", "-a", aid, check=True)

    def env(self, **extra) -> dict:
        env = course.instructor_env()
        env.update(PYTHONPATH=str(self.copy), SDCOURSE_PROGRESS="0", **extra)
        env.pop("SDCOURSE_DB_URL", None)
        return env

    def grade(self, *args, check=False, **extra) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "graders.grade", *args], cwd=self.copy,
                             env=self.env(**extra), capture_output=True, text=True)
        if check and (res.returncode != 0 or "FAIL " in res.stdout):
            raise RuntimeError(f"grade {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def submit(self, student: str, aid: str, nb) -> None:
        subs.write(nb, self.copy / "graders" / "workspace" / "submitted" / student / aid / f"{aid}.ipynb")

    def reference(self, aid: str, lean: bool = False):
        source = subs.read(self.copy / "solutions" / aid / f"{aid}.ipynb")
        release = subs.read(self.copy / "notebooks" / aid / f"{aid}.ipynb")
        nb = subs.fill(release, subs.reference_answers(source))
        return attacks.lean(nb) if lean else nb

    def passes(self) -> dict:
        from nbgrader.api import Gradebook

        out = {}
        with Gradebook(subs.gradebook_url(self.copy)) as gb:
            for a in gb.assignments:
                for sub in gb.assignment_submissions(a.name):
                    out[(sub.student.id, a.name)] = {g.name: g.score for nb in sub.notebooks
                                                     for g in nb.grades}
        return out

    def check_full_marks(self, expected: int) -> None:
        """Every one of the ``expected`` reference submissions got every autograded mark: a timing
        of a run in which lesson cells failed (say, a model the sandbox could not read) is no timing."""
        from nbgrader.api import Gradebook

        short, n = [], 0
        with Gradebook(subs.gradebook_url(self.copy)) as gb:
            for a in gb.assignments:
                for sub in gb.assignment_submissions(a.name):
                    n += 1
                    short += [f"{sub.student.id}/{a.name}: {g.name} {g.score}/{g.max_score}"
                              for nb in sub.notebooks for g in nb.grades
                              if g.cell.cell_type == "code" and g.score != g.max_score]  # written answers wait for a person
        if short or n != expected:
            raise RuntimeError(f"{n} of {expected} reference submissions graded; not at full marks: "
                               + "; ".join(short[:10]))

    def close(self):
        self.tmp.cleanup()


def autograde_timed(aid: str, sandbox: bool = True) -> float:
    c = Course([aid])
    try:
        c.submit("bench", aid, c.reference(aid))
        t0 = time.perf_counter()
        c.grade("autograde", "-a", aid, "-s", "bench", "-j", "1", *([] if sandbox else ["--no-sandbox"]),
                check=True)
        secs = time.perf_counter() - t0
        c.check_full_marks(1)
        return secs
    finally:
        c.close()


def grading_throughput(aids: list[str], per_lesson: int = 4) -> dict:
    out = {}
    for jobs in (1, 2):
        c = Course(aids)
        try:
            n = 0
            for aid in aids:
                for k in range(per_lesson):
                    c.submit(f"s{k}", aid, c.reference(aid))
                    n += 1
            t0 = time.perf_counter()
            c.grade("autograde", "-j", str(jobs), check=True)
            secs = time.perf_counter() - t0
            c.check_full_marks(n)
            out[jobs] = {"n": n, "seconds": secs, "per_minute": 60 * n / secs}
        finally:
            c.close()
    return out


def one_student(aids: list[str]) -> float:
    c = Course(aids)
    try:
        for aid in aids:
            c.submit("student", aid, c.reference(aid))
        t0 = time.perf_counter()
        c.grade("autograde", "-s", "student", check=True)
        secs = time.perf_counter() - t0
        c.check_full_marks(len(aids))
        return secs
    finally:
        c.close()


def resume(n: int = 20) -> dict:
    """The same batch graded straight through, and interrupted half-way then resumed."""
    aid = attacks.ASSIGNMENT
    key = course.lesson(aid).key
    results = {}
    for mode in ("straight", "interrupted"):
        c = Course([aid])
        try:
            source = subs.read(c.copy / "solutions" / aid / f"{aid}.ipynb")
            release = subs.read(c.copy / "notebooks" / aid / f"{aid}.ipynb")
            ref = subs.reference_answers(source)
            mutants = subs.load_lesson(key).mutants
            for i in range(n):
                answers = ref if i % 3 == 0 else subs.apply(ref, [mutants[i % len(mutants)]])
                c.submit(f"s{i:02d}", aid, attacks.lean(subs.fill(release, answers)))
            t0 = time.perf_counter()
            if mode == "straight":
                c.grade("autograde", "-a", aid, "-j", "2", check=True)
                stopped_after = None
            else:
                proc = subprocess.Popen([sys.executable, "-m", "graders.grade", "autograde", "-a", aid, "-j", "2"],
                                        cwd=c.copy, env=c.env(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
                from graders.status import StatusStore

                db = subs.gradebook_url(c.copy)
                stopped_after = 0
                while proc.poll() is None:
                    time.sleep(2)
                    if (c.copy / "graders" / "workspace" / "gradebook.db").exists():
                        st = StatusStore(db)
                        stopped_after = sum(s.status == "graded" for s in st.all())
                        st.close()
                        if stopped_after >= n // 2:
                            os.killpg(proc.pid, signal.SIGINT)
                            break
                proc.wait()
                c.grade("autograde", "-a", aid, "-j", "2", check=True)
            results[mode] = {"seconds": time.perf_counter() - t0, "grades": c.passes(),
                             "stopped_after": stopped_after}
        finally:
            c.close()
    return {"n": n, "same": results["straight"]["grades"] == results["interrupted"]["grades"],
            "stopped_after": results["interrupted"]["stopped_after"],
            "straight_s": results["straight"]["seconds"], "interrupted_s": results["interrupted"]["seconds"]}


def lesson_extras() -> list[str]:
    lines = []
    try:
        from sdcourse import l4_guidance

        fn = getattr(l4_guidance, "measure_batched_cfg", None)
        if fn is not None:
            r = fn()
            lines.append(f"- 6-3-4: batched [uncond, cond] U-Net call vs two calls: {r}")
    except Exception as exc:  # noqa: BLE001 - a missing lesson is not a benchmark failure
        lines.append(f"- 6-3-4 extra not measured ({type(exc).__name__}: {exc})")
    try:
        from sdcourse import l5_latents

        fn = getattr(l5_latents, "measure_unet_cost", None)
        if fn is not None:
            r = fn()
            lines.append(f"- 6-3-5: U-Net cost at latent vs pixel resolution: {r}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"- 6-3-5 extra not measured ({type(exc).__name__}: {exc})")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-a", "--assignment")
    ap.add_argument("--only", help="comma-separated parts: lessons, grading, class, resume, extras "
                    "(default: all; with -a: lessons,extras)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per lesson figure; the best is kept")
    ap.add_argument("--per-lesson", type=int, default=4,
                    help="grading throughput: reference submissions per lesson in the batch (default 4)")
    args = ap.parse_args(argv)
    parts = set((args.only or ("lessons,extras" if args.assignment else
                               "lessons,grading,class,resume,extras")).split(","))
    lessons = [l for l in course.lessons() if not args.assignment or l.assignment == args.assignment]
    aids = [l.assignment for l in lessons]
    head = (f"# Benchmarks ({dt.date.today()}, {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"python {platform.python_version()})")
    lines = [head, ""]
    if "lessons" in parts:
        lines += ["| assignment | execute (s, beyond kernel start) | kernel start (s) | peak kernel RSS (MB) "
                  "| slowest cell | autograde one submission, sandboxed (s) | without sandbox (s) |",
                  "|---|---|---|---|---|---|---|"]
        for lesson in lessons:
            aid = lesson.assignment
            runs = [execute_timed(lesson.source) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["execute_s"])
            g = min(autograde_timed(aid) for _ in range(args.repeat))
            g0 = min(autograde_timed(aid, sandbox=False) for _ in range(args.repeat))
            row = (f"| {aid} | {best['execute_s']:.1f} | {best['kernel_start_s']:.1f} | "
                   f"{best['peak_rss_mb']:.0f} | {best['slowest_cell']} | {g:.1f} | {g0:.1f} |")
            print(row, flush=True)
            lines.append(row)
        lines.append("")
    if "grading" in parts and len(aids) > 0:
        t = grading_throughput(aids, args.per_lesson)
        r1, r2 = t[1]["per_minute"], t[2]["per_minute"]
        per_core = r2 / 2
        lines += [f"## Grading throughput ({t[1]['n']} reference submissions, {args.per_lesson} per lesson)", "",
                  f"- 1 worker: {t[1]['seconds']:.0f} s, {r1:.2f} submissions/min",
                  f"- 2 workers: {t[2]['seconds']:.0f} s, {r2:.2f} submissions/min ({r2 / r1:.2f}x; "
                  f"{per_core:.2f} submissions/min per core)",
                  f"- projection: 1,000 notebooks on a 16-core machine at {per_core:.2f}/min per core: "
                  f"{1000 / (per_core * 16):.0f} min (assumes the per-core rate holds at 16 workers)", ""]
        print("\n".join(lines[-6:]), flush=True)
    if "class" in parts and aids:
        s = one_student(aids)
        lines += [f"## One student's {len(aids)} notebooks, autograded together (-j {os.cpu_count()})", "",
                  f"- {s:.0f} s", ""]
        print(lines[-2], flush=True)
    if "resume" in parts:
        r = resume()
        lines += [f"## Interrupted and resumed batch ({r['n']} lean submissions of 6-3-2, -j 2)", "",
                  f"- straight through: {r['straight_s']:.0f} s; interrupted after {r['stopped_after']} "
                  f"graded, then resumed: {r['interrupted_s']:.0f} s in all; same grades: {r['same']}", ""]
        print(lines[-2], flush=True)
    if "extras" in parts:
        extra = lesson_extras()
        if extra:
            lines += ["## Lesson figures", ""] + extra + [""]
            print("\n".join(extra), flush=True)
    (ROOT / "bench").mkdir(exist_ok=True)
    (ROOT / "bench" / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {ROOT / 'bench' / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
