"""Fixtures of the browser suite (`make test-browser`; never collected by `pytest tests`).

One throw-away copy of the course per role (``graders.submissions.copy_course``), one Jupyter
server per role started by graders/jupyter/serve.py exactly as `make lab` / `make formgrader`
start it, one headless Chromium (Debian's, through Playwright) with one JupyterLab page per
role, reused by every test. Nothing in the repository changes.

A failing test leaves a screenshot of every open page, and the servers' logs, in
``tests/browser/artifacts/`` (gitignored; the path is printed at the end of the run).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from graders import course
from graders import submissions as subs

from .harness import Lab, Server, launch_browser

ARTIFACTS = Path(os.environ.get("SDCOURSE_BROWSER_ARTIFACTS", Path(__file__).parent / "artifacts"))
REFERENCE_DIR = "_reference"          # inside the student copy's notebooks/ (the server root)
_contexts: list = []
_servers: dict[str, Server] = {}
_consoles: list = []
TIMINGS: dict[str, float] = {}
LOCAL = ("http://127.0.0.1", "file://", "data:", "blob:", "about:", "chrome")


def timing(name: str, seconds: float) -> None:
    TIMINGS[name] = round(seconds, 1)


def pytest_configure(config):
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" or (rep.when == "setup" and rep.failed):
        item._browser_failed = rep.failed


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request):
    yield
    if getattr(request.node, "_browser_failed", False):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
        for i, page in enumerate(p for ctx in _contexts for p in ctx.pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"FAILED-{name}-{i}.png"), full_page=False, timeout=20_000)
            except Exception:  # noqa: BLE001 - a screenshot must never hide the real failure
                pass
        for i, console in enumerate(_consoles):
            (ARTIFACTS / f"FAILED-{name}-console-{i}.txt").write_text("\n".join(console.messages[-300:]))
        for role, server in _servers.items():
            try:
                (ARTIFACTS / f"{role}-server.log").write_text(server.log())
            except OSError:
                pass


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
        terminalreporter.write_sep("-", "browser suite timings (s)")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"{v:8.1f}  {k}")
    shots = sorted(ARTIFACTS.glob("FAILED-*.png"))
    terminalreporter.write_sep("-", f"browser artifacts: {ARTIFACTS}"
                               + (f" ({len(shots)} failure screenshot(s))" if shots else ""))


# --------------------------------------------------------------------------- course copies

@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="session")
def student_copy(work) -> Path:
    """The course as a student has it, plus the reference answers of every lesson (built with
    graders.submissions into this copy only) under notebooks/_reference/<a>/<a>.ipynb."""
    copy = subs.copy_course(work / "student-course")
    for lesson in course.lessons():
        ref = subs.fill(subs.read(lesson.release), subs.reference_answers(subs.read(lesson.source)))
        subs.write(ref, copy / "notebooks" / REFERENCE_DIR / lesson.assignment / f"{lesson.assignment}.ipynb")
    return copy


@pytest.fixture(scope="session")
def instructor_copy(work) -> Path:
    """A fresh clone's course: no grading workspace at all (the server must create it)."""
    copy = subs.copy_course(work / "instructor-course")
    assert not (copy / "graders" / "workspace").exists()
    return copy


# --------------------------------------------------------------------------- servers, browser

def _server(role: str, copy: Path, work: Path):
    t0 = time.time()
    server = Server(copy, role, work / f"home-{role}", ARTIFACTS / f"{role}-server.log").wait()
    timing(f"{role} server start", time.time() - t0)
    _servers[role] = server
    return server


@pytest.fixture(scope="session")
def student_server(student_copy, work):
    server = _server("student", student_copy, work)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def instructor_server(instructor_copy, work):
    server = _server("instructor", instructor_copy, work)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser(work):
    from playwright.sync_api import sync_playwright

    from .harness import CHROMIUM

    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing: `make setup-grading` installs Debian's chromium"
        if os.environ.get("SDCOURSE_REQUIRE_ALL") == "1":
            pytest.fail(why)
        pytest.skip(why)
    pw = sync_playwright().start()
    ctx = launch_browser(pw, work / "chromium-profile")
    ctx.set_default_timeout(60_000)
    # Offline, as in a classroom without internet: Chromium resolves no host but this machine
    # (harness.CHROMIUM_ARGS); every request elsewhere is recorded, so a test can prove that
    # nothing tried to reach a CDN.
    ctx.external_requests = []
    ctx.on("request", lambda r: None if r.url.startswith(LOCAL) else ctx.external_requests.append(r.url))
    _contexts.append(ctx)
    yield ctx
    ctx.close()
    pw.stop()


class Console:
    """Console messages and page errors of one page."""

    def __init__(self, page):
        self.messages: list[str] = []
        _consoles.append(self)
        page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))

    def since(self, mark: int) -> list[str]:
        return self.messages[mark:]


@pytest.fixture(scope="session")
def student_lab(browser, student_server) -> Lab:
    page = browser.new_page()
    lab = Lab(page, student_server)
    lab.console = Console(page)
    # record each cell's execution time (the report's slowest cells); this server's settings only
    lab.setting("@jupyterlab/notebook-extension:tracker", {"recordTiming": True})
    t0 = time.time()
    lab.open()
    timing("student JupyterLab first load", time.time() - t0)
    return lab


@pytest.fixture(scope="session")
def instructor_page(browser, instructor_server):
    page = browser.new_page()
    page.console = Console(page)
    return page
