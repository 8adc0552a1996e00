"""What the browser tests drive: a Jupyter server started the way `make lab` / `make formgrader`
start it (graders/jupyter/serve.py, here on a throw-away copy of the course), Debian's Chromium
through Playwright (never a downloaded browser), and small helpers for JupyterLab.

JupyterLab is started with ``--LabApp.expose_app_in_browser=True`` so that the tests can read
the notebook model (cells, outputs, kernel status) as JupyterLab sees it; every action a
student or instructor takes (Run All, Validate, widget moves, Formgrader buttons) goes through
the UI.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("SDCOURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--mute-audio",
                 "--disable-dev-shm-usage", "--no-default-browser-check",
                 "--disable-features=Translate,MediaRouter,OptimizationHints",
                 # offline: no host resolves but this machine
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One JupyterLab server for ``role`` on the course at ``root`` (its own copy of
    graders/jupyter/serve.py), with a private config/runtime dir and its log in ``log``."""

    def __init__(self, root: Path, role: str, home: Path, log: Path):
        self.root, self.role, self.log_path = root, role, log
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        for sub in ("config", "runtime", "data"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   JUPYTER_PLATFORM_DIRS="1", IPYTHONDIR=str(home / "ipython"),
                   PYTHONUNBUFFERED="1", MPLCONFIGDIR=str(home / "mpl"))
        env.pop("JUPYTER_CONFIG_PATH", None)
        env.pop("PYTHONPATH", None)
        argv = [sys.executable, str(root / "graders" / "jupyter" / "serve.py"), role,
                f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
                "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0",
                "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LanguageServerManager.autodetect=False"]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait(self, timeout: float = 180) -> "Server":
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.role} server exited ({self.proc.returncode}); "
                                   f"log: {self.log_path}\n{self.log()[-3000:]}")
            try:
                self.api("GET", "/api/status")
                return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the {self.role} server did not answer in {timeout} s; log: {self.log_path}")

    def api(self, method: str, path: str, body=None, timeout: float = 30):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
        return json.loads(data) if data else None

    def link(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}token={self.token}"

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=10)
                self.proc.wait(20)
            except Exception:  # noqa: BLE001 - stop it harder below
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self._log.close()


def launch_browser(playwright, profile: Path):
    """Debian's Chromium, headless, with a fresh profile and no background networking."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} not found: run `make setup-grading` (installs Debian's chromium)")
    if profile.exists():
        shutil.rmtree(profile)
    profile.mkdir(parents=True)
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000}, accept_downloads=False, service_workers="block")


# --------------------------------------------------------------------------- JupyterLab

JS_NOTEBOOK = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.content || !w.content.model || !w.sessionContext) return null;
  const s = w.sessionContext;
  const cells = [];
  const n = w.content.model.cells.length;
  for (let i = 0; i < n; i++) {
    const c = w.content.model.cells.get(i);
    const j = c.toJSON();
    cells.push({type: j.cell_type, count: j.execution_count === undefined ? null : j.execution_count,
                outputs: j.outputs || [], source: j.source, nbgrader: (j.metadata || {}).nbgrader || null});
  }
  const widgets = Array.from(w.content.widgets);
  return JSON.stringify({path: w.context.path, kernel: s.session && s.session.kernel ? s.session.kernel.status : null,
          kernelName: String(s.kernelDisplayName), dirty: Boolean(w.context.model.dirty),
          busy: widgets.filter(c => c.model.type === 'code' && c.promptNode && c.promptNode.textContent.includes('*')).length,
          cells});
}"""


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        t = output.get("text", "")
        return "".join(t) if isinstance(t, list) else t
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    data = output.get("data", {})
    t = data.get("text/plain", "")
    return "".join(t) if isinstance(t, list) else t


def src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


class Lab:
    """One JupyterLab page, reused for every notebook of one server."""

    def __init__(self, page, server: Server):
        self.page, self.server = page, server

    def open(self, timeout: float = 180_000) -> "Lab":
        self.page.goto(self.server.link("/lab"), wait_until="domcontentloaded", timeout=timeout)
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell && "
                                    "document.querySelector('#jp-main-dock-panel')", timeout=timeout)
        self.page.wait_for_selector(".jp-FileBrowser", timeout=timeout)
        return self

    def open_notebook(self, path: str, timeout: float = 180_000) -> dict:
        """Open ``path`` (relative to the server root) and wait for its kernel to be idle."""
        self.page.evaluate("p => { window.jupyterapp.commands.execute('docmanager:open', {path: p}); }", path)
        self.page.wait_for_function(
            """p => { const w = window.jupyterapp.shell.currentWidget;
                      return w && w.context && w.context.path === p && w.sessionContext && w.sessionContext.session
                             && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }""",
            arg=path, timeout=timeout)
        self.page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=timeout)
        return self.state()

    def state(self) -> dict | None:
        text = self.page.evaluate(JS_NOTEBOOK)
        return None if text is None else json.loads(text)

    def menu(self, top: str, item: str) -> None:
        """Click a main-menu entry (e.g. Run -> Run All Cells), as a person does."""
        self.page.locator(".lm-MenuBar-item", has_text=top).first.click()
        self.page.locator(".lm-Menu-item:visible", has_text=item).first.click()

    def run_all(self, timeout: float = 480) -> tuple[dict, float]:
        """Run -> Run All Cells; wait until nothing is queued or running. Returns (state, seconds)."""
        t0 = time.time()
        self.menu("Run", "Run All Cells")
        time.sleep(1.0)
        return self.wait_idle(timeout), time.time() - t0

    def wait_idle(self, timeout: float = 480) -> dict:
        t0 = time.time()
        quiet = 0
        while time.time() - t0 < timeout:
            st = self.state()
            if st and st["kernel"] == "idle" and st["busy"] == 0:
                quiet += 1
                if quiet >= 3:
                    return st
            else:
                quiet = 0
            time.sleep(0.5)
        raise TimeoutError(f"the notebook was still running after {timeout} s")

    def close_all(self) -> None:
        """Close every tab without saving and shut its kernel down (frees the machine)."""
        self.page.evaluate("""() => {
            for (const w of Array.from(window.jupyterapp.shell.widgets('main'))) {
                if (w.context && w.context.model) w.context.model.dirty = false;
                w.dispose();
            } }""")
        for session in self.server.api("GET", "/api/sessions"):
            try:
                self.server.api("DELETE", f"/api/sessions/{session['id']}")
            except OSError:
                pass

    def setting(self, plugin: str, values: dict) -> None:
        """Set a user setting of this server's JupyterLab (its own, temporary settings)."""
        self.server.api("PUT", f"/lab/api/settings/{plugin}", {"raw": json.dumps(values)})

    def current_panel(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
