"""Runs INSIDE the sandbox: execute a prepared submission cell by cell and stream the results.

Copied by the trusted driver into the sandbox's read-only job folder (``/grader``) and run as
``python /grader/sandbox_exec.py /grader/job.json``. Self-contained (nbclient, nbformat and the
standard library). Nothing it prints decides a grade on its own: the trusted side reads the
packed outputs of the hidden checks from this stream and compares them with the oracles.

Protocol on stdout, one JSON object per line:

    {"type": "cell", "index": i, "status": "ok|error|timeout|killed|skipped", "seconds": s,
     "outputs": [...]}                                   after every code cell
    {"type": "file", "path": "<grade_id>/<k>/<seed>.st", "data": "<base64>"}
                                                         each packed hidden-check output
    {"type": "note", "text": "..."}                      restarts, budget, ...
    {"type": "done"}

Per-cell wall time is enforced here (interrupt; if the kernel ignores it, restart it and
re-run the cells that had completed, skipping the ones that hung or crashed); the total budget
too (later cells are skipped); the trusted side kills the whole sandbox after its own limit.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

MAX_OUTPUT_CHARS = 20_000        # text kept per output (feedback only)
MAX_CELL_OUTPUTS = 20
MAX_FILE_BYTES = 64 * 2**20


_OUT = None


def emit(obj) -> None:
    """Write one record to the trusted side (a private copy of stdout: the kernel, started
    below with its output sent to /dev/null, never writes on this channel by accident)."""
    global _OUT
    if _OUT is None:
        fd = os.dup(1)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        _OUT = os.fdopen(fd, "w", buffering=1)
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


def _trim(outputs) -> list:
    kept = []
    for out in list(outputs)[:MAX_CELL_OUTPUTS]:
        out = dict(out)
        if "text" in out and isinstance(out["text"], str):
            out["text"] = out["text"][:MAX_OUTPUT_CHARS]
        if "traceback" in out:
            out["traceback"] = [str(t)[:MAX_OUTPUT_CHARS] for t in out["traceback"][-30:]]
        if "data" in out and isinstance(out["data"], dict):
            data = {}
            for mime, value in out["data"].items():
                if mime == "application/vnd.jupyter.widget-view+json":
                    continue
                text = value if isinstance(value, str) else json.dumps(value)
                if len(text) <= (400_000 if mime.startswith("image/") else MAX_OUTPUT_CHARS):
                    data[mime] = value
            out["data"] = data
        kept.append(out)
    return kept


def flush_outbox(outbox: Path, sent: dict) -> None:
    if not outbox.is_dir():
        return
    for path in sorted(outbox.rglob("*.st")):
        try:
            rel = str(path.relative_to(outbox))
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            if sent.get(rel) == key or stat.st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
            sent[rel] = key
            emit({"type": "file", "path": rel, "data": base64.b64encode(data).decode()})
        except OSError:
            continue


def main(job_path: str) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    job = json.loads(Path(job_path).read_text())
    nb = nbformat.read(job["notebook"], as_version=4)
    timeout = int(job["cell_timeout"])
    deadline = time.monotonic() + float(job["budget_seconds"])
    startup = job["startup"]
    # the kernel's working folder, and where it writes its records: ``/sandbox`` inside the
    # sandbox, a private temporary folder with ``--no-sandbox``
    scratch = job.get("scratch", "/sandbox")
    outbox = Path(scratch) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    sent: dict = {}

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": f"stopped after {timeout} s",
                          "traceback": [f"CellTimeoutError: this cell ran longer than {timeout} s and was stopped"]},
        record_timing=False, iopub_timeout=10, shutdown_kernel="immediate",
        resources={"metadata": {"path": scratch}},
        extra_arguments=["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=CRITICAL"])

    last_reply: dict = {}

    def on_executed(cell=None, cell_index=None, execute_reply=None, **_):
        last_reply["content"] = (execute_reply or {}).get("content", {})

    client.on_cell_executed = on_executed
    done_ok: list[int] = []        # cells that completed (ok or error): replayed after a restart
    bad: set[int] = set()          # cells that hung or killed the kernel: never run again

    def execute_detached(cell) -> None:
        """Execute a cell that is not (or no longer) part of the notebook: nbclient writes every
        executed cell back into ``client.nb`` at its index, so point it at a scratch notebook."""
        real = client.nb
        client.nb = nbformat.v4.new_notebook(cells=[cell])
        try:
            client.execute_cell(cell, 0)
        finally:
            client.nb = real

    def run_silently(source: str, limit: int) -> bool:
        cell = nbformat.v4.new_code_cell(source)
        try:
            client.timeout = limit
            last_reply.clear()
            execute_detached(cell)
            return (last_reply.get("content", {}).get("status") == "ok"
                    and not any(o.get("output_type") == "error" for o in cell.outputs))
        except Exception:  # noqa: BLE001
            return False
        finally:
            client.timeout = timeout

    def responsive() -> bool:
        try:
            if not client.kc.is_alive():
                return False
        except Exception:  # noqa: BLE001
            return False
        return run_silently("pass", 10)

    def restart(reason: str) -> None:
        """A fresh kernel, the start-up code, then every cell that had completed, again."""
        from jupyter_core.utils import run_sync

        emit({"type": "note", "text": reason})
        try:
            client.kc.stop_channels()
        except Exception:  # noqa: BLE001
            pass
        try:
            run_sync(client.km.restart_kernel)(now=True)
        except Exception:  # noqa: BLE001 - e.g. the old kernel is already gone
            run_sync(client.km.start_kernel)()
        run_sync(client.async_start_new_kernel_client)()
        run_silently(startup, 60)
        for j in done_ok:
            if time.monotonic() > deadline:
                break
            cell = nbformat.from_dict(json.loads(json.dumps(nb.cells[j])))
            try:
                execute_detached(cell)
            except Exception:  # noqa: BLE001
                pass

    budget_noted = False
    with client.setup_kernel():
        if not run_silently(startup, 60):
            emit({"type": "note", "text": "the grading start-up code failed in this kernel"})
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if time.monotonic() > deadline:
                if not budget_noted:
                    budget_noted = True
                    emit({"type": "note", "text": f"the notebook used its time budget ({job['budget_seconds']} s); "
                                                  f"cell {i} and the cells after it were not run"})
                emit({"type": "cell", "index": i, "status": "skipped", "seconds": 0.0, "outputs": []})
                continue
            t0 = time.monotonic()
            status = "ok"
            last_reply.clear()
            try:
                client.execute_cell(cell, i)
                if (last_reply.get("content", {}).get("ename") == "CellTimeoutError"
                        or any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
                               for o in cell.outputs)):
                    status = "timeout"
                    if not any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
                        cell.outputs.append(nbformat.v4.new_output(
                            "error", ename="CellTimeoutError", evalue=f"stopped after {timeout} s",
                            traceback=[f"CellTimeoutError: this cell ran longer than {timeout} s and was stopped"]))
                elif any(o.get("output_type") == "error" for o in cell.outputs):
                    status = "error"
            except DeadKernelError:
                status = "killed"
            except Exception as exc:  # noqa: BLE001 - nbclient gave up on this cell
                status = "timeout" if "imeout" in type(exc).__name__ else "killed"
            seconds = time.monotonic() - t0
            if status in ("timeout", "killed"):
                bad.add(i)
                if status == "killed" or not responsive():
                    restart(f"cell {i}: the kernel {'died' if status == 'killed' else 'did not stop'}; "
                            "restarted it and re-ran the cells before this one")
            else:
                done_ok.append(i)
            flush_outbox(outbox, sent)
            emit({"type": "cell", "index": i, "status": status, "seconds": round(seconds, 2),
                  "outputs": _trim(cell.outputs)})
        flush_outbox(outbox, sent)
    emit({"type": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
