"""Rerunnable benchmarks (``make bench``): how long each reference notebook takes to execute
beyond kernel start-up, the peak memory of its kernel, and how long autograding one
reference submission takes, per lesson. Results go to ``bench/results.md`` (and stdout).

    python graders/bench.py [-a ASSIGNMENT] [--repeat N]

Not a test: the numbers depend on the machine. The targets live in the README and issues.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from graders import submissions as subs  # noqa: E402

PEAK_RSS = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def execute_timed(path: Path) -> dict:
    """Kernel start-up, then every cell; returns seconds and the kernel's peak RSS (MB)."""
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_RSS))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel():
        t1 = time.perf_counter()
        slowest = (0.0, -1)
        for i, cell in enumerate(nb.cells):
            c0 = time.perf_counter()
            client.execute_cell(cell, i)
            slowest = max(slowest, (time.perf_counter() - c0, i))
        t2 = time.perf_counter()
    out = nb.cells[-1].outputs[0]["text"].strip()
    return {"kernel_start_s": t1 - t0, "execute_s": t2 - t1, "peak_rss_mb": int(out) / 1024,
            "slowest_cell": f"cell {slowest[1]} ({slowest[0]:.1f} s)"}


def autograde_timed(aid: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        course = subs.copy_course(Path(tmp))
        env = dict(os.environ, PYTHONPATH=str(course), HF_HUB_OFFLINE="1")
        grade = [sys.executable, str(course / "graders" / "grade.py")]
        subprocess.run(grade + ["release", "-a", aid], env=env, check=True, capture_output=True)
        source = subs.read(course / "solutions" / aid / f"{aid}.ipynb")
        release = subs.read(course / "notebooks" / aid / f"{aid}.ipynb")
        subs.write(subs.fill(release, subs.reference_answers(source)),
                   course / "graders" / "workspace" / "submitted" / "bench" / aid / f"{aid}.ipynb")
        t0 = time.perf_counter()
        res = subprocess.run(grade + ["autograde", "-a", aid, "-s", "bench"], env=env,
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if res.returncode != 0 or "FAIL " in res.stdout:
            raise RuntimeError(f"autograde failed for {aid}:\n{res.stdout}\n{res.stderr}")
        return elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-a", "--assignment")
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure; the best is kept")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    rows = []
    for src in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        aid = src.parent.name
        if args.assignment and aid != args.assignment:
            continue
        runs = [execute_timed(src) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["execute_s"])
        grade_s = min(autograde_timed(aid) for _ in range(args.repeat))
        rows.append((aid, best, grade_s))
        print(f"{aid}: execute {best['execute_s']:.1f} s beyond kernel start "
              f"({best['kernel_start_s']:.1f} s), peak kernel RSS {best['peak_rss_mb']:.0f} MB, "
              f"slowest {best['slowest_cell']}; autograde one submission {grade_s:.1f} s", flush=True)
    lines = [f"# Benchmarks ({dt.date.today()}, {platform.machine()}, {os.cpu_count()} CPU cores, "
             f"python {platform.python_version()})", "",
             "| assignment | execute (s, beyond kernel start) | kernel start (s) | peak kernel RSS (MB) "
             "| slowest cell | autograde one submission (s, incl. release check-in) |",
             "|---|---|---|---|---|---|"]
    for aid, r, g in rows:
        lines.append(f"| {aid} | {r['execute_s']:.1f} | {r['kernel_start_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['slowest_cell']} | {g:.1f} |")
    (ROOT / "bench").mkdir(exist_ok=True)
    (ROOT / "bench" / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {ROOT / 'bench' / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
