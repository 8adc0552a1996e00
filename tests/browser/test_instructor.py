"""The instructor's side (`make formgrader`): the Formgrader on a fresh clone, Generate,
Autograde from the UI (in the bubblewrap sandbox, the same scores as `make autograde`), manual
grading that persists, student names, and feedback whose formulas render offline.

The tests run in order on one server and one course copy; each builds on the one before."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graders import course, sandbox
from graders import submissions as subs

from .conftest import ARTIFACTS, timing

# Graded through the UI: lesson 2 (the quickest to grade); every lesson is listed and linked.
GRADED = next((l for l in course.lessons() if l.number == 2), course.lessons()[0]).assignment
REFERENCE, CLI = "ada", "carol"   # ada: on the roster, graded in the Formgrader; carol: make autograde
STATE: dict = {}


def _grade_cli(copy: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m graders.grade ...` in the course copy (what the Makefile runs)."""
    return subprocess.run([sys.executable, "-m", "graders.grade", *args], cwd=copy, capture_output=True,
                          text=True, env=course.instructor_env({k: v for k, v in os.environ.items()
                                                               if k != "PYTHONPATH"}), timeout=900)


def _gradebook(copy: Path):
    from nbgrader.api import Gradebook

    return Gradebook(subs.gradebook_url(copy))


def _modal(page, timeout: float = 600_000) -> tuple[str, str]:
    """Wait for the Formgrader's result modal; return (success|error, its text) and close it."""
    modal = page.locator("#success-modal, #error-modal").first
    modal.wait_for(state="visible", timeout=timeout)
    kind, text = modal.get_attribute("id").split("-")[0], modal.inner_text()
    modal.locator("button.close, button:has-text('Close'), button:has-text('OK')").first.click()
    modal.wait_for(state="detached", timeout=30_000)
    return kind, text


def _row(page, text: str):
    return page.locator("#main-table tr", has_text=text).first


def test_formgrader_in_the_instructor_lab_lists_every_assignment(browser, instructor_server, instructor_copy):
    """A fresh clone: the server created the workspace and the gradebook; JupyterLab's
    Nbgrader -> Formgrader lists every lesson of the registry, its links open solutions/ (the
    source) in Lab's file browser, and outside Lab /tree/solutions/... and /tree/notebooks/...
    pages that exist."""
    page = browser.new_page()
    t0 = time.time()
    page.goto(instructor_server.link("/lab"))
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.lm-MenuBar-item')",
                           timeout=180_000)
    page.locator(".lm-MenuBar-item", has_text="Nbgrader").first.click()
    page.locator(".lm-Menu-item:visible", has_text="Formgrader").first.click()
    frame = page.frame_locator("iframe[src*='formgrader']").first
    for aid in course.assignments():
        frame.locator("#main-table tr", has_text=aid).first.wait_for(timeout=120_000)
    timing("instructor JupyterLab + Formgrader first load", time.time() - t0)
    assert (instructor_copy / "graders" / "workspace" / "gradebook.db").is_file()
    assert frame.locator("#warning-exchange").count() == 0, "the Formgrader warns about the exchange"
    # In Lab, an assignment's name opens its source folder in the file browser.
    first = course.assignments()[0]
    frame.locator("#main-table tr", has_text=first).first.locator("td.name a").click()
    page.wait_for_function("a => (document.querySelector('.jp-FileBrowser-crumbs') || {}).textContent"
                           " && document.querySelector('.jp-FileBrowser-crumbs').textContent.includes(a)",
                           arg=first, timeout=60_000)
    crumbs = page.locator(".jp-FileBrowser-crumbs").inner_text()
    assert "solutions" in crumbs, crumbs
    # The same page outside Lab links /tree/... for the source and the release: they open.
    page.goto(instructor_server.link("/formgrader/manage_assignments"))
    page.locator("#main-table tr", has_text=course.assignments()[-1]).first.wait_for()
    hrefs = page.locator("#main-table a[href*='/tree/']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    for aid in course.assignments():
        assert f"/tree/./solutions/{aid}" in hrefs and f"/tree/./notebooks/{aid}" in hrefs, hrefs
    for href in hrefs:
        response = page.request.get(instructor_server.link(href))
        assert response.status == 200, f"{href}: {response.status}"
    page.close()


def test_generate_writes_the_release_as_make_assignments(instructor_page, instructor_server, instructor_copy):
    """The Formgrader's Generate button checks the lesson into the gradebook and writes the
    release as `make assignments` does (graders/grade.py): the students' banner first, stable
    cell ids, no outputs, no widget state, no nbval markers."""
    page = instructor_page
    release = instructor_copy / "notebooks" / GRADED / f"{GRADED}.ipynb"
    release.unlink()
    page.goto(instructor_server.link("/formgrader/manage_assignments"))
    t0 = time.time()
    _row(page, GRADED).locator("td.assign a").click()
    kind, text = _modal(page)
    timing(f"Formgrader Generate {GRADED}", time.time() - t0)
    assert kind == "success", text[-2000:]
    nb = subs.read(release)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("> **Your copy of lesson")
    assert [c.get("id") for c in nb.cells] == [f"cell-{i:03d}" for i in range(len(nb.cells))]
    assert not [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert "widgets" not in nb.metadata and "NBVAL" not in release.read_text()
    with _gradebook(instructor_copy) as gb:
        assert gb.find_assignment(GRADED).notebooks


def test_ui_autograde_gives_what_make_autograde_gives(instructor_page, instructor_server, instructor_copy, work):
    """Collected as `make collect` does: ada (on the roster) and carol (not on it) hand in the
    reference answers. The Formgrader's Autograde button grades ada in the sandbox, `make
    autograde` grades carol: the same score for every cell, full marks."""
    ok, why = sandbox.check()
    if not ok:
        if os.environ.get("SDCOURSE_REQUIRE_ALL") == "1":
            pytest.fail(f"no grading sandbox: {why}")
        pytest.skip(f"no grading sandbox (make setup-grading): {why}")
    lesson = course.lesson(GRADED)
    release = subs.read(instructor_copy / "notebooks" / GRADED / f"{GRADED}.ipynb")   # as generated
    ref = subs.fill(release, subs.reference_answers(subs.read(lesson.source)))
    downloads = work / "downloads"
    for student, nb in ((REFERENCE, ref), (CLI, ref)):
        subs.write(nb, downloads / student / f"{GRADED}.ipynb")
    roster = work / "roster.csv"
    roster.write_text("student,first_name,last_name,email\nada,Ada,Lovelace,ada@example.org\n")
    for args in (("collect", str(downloads)), ("roster", str(roster))):
        done = _grade_cli(instructor_copy, *args)
        assert done.returncode == 0, done.stdout + done.stderr

    page = instructor_page
    page.goto(instructor_server.link(f"/formgrader/manage_submissions/{GRADED}"))
    logs = {}
    t0 = time.time()
    _row(page, REFERENCE).locator("td.autograde a").click()
    kind, logs[REFERENCE] = _modal(page)
    timing(f"Formgrader Autograde ({REFERENCE})", time.time() - t0)
    assert kind == "success", logs[REFERENCE][-3000:]
    t0 = time.time()
    done = _grade_cli(instructor_copy, "autograde", "-a", GRADED, "-s", CLI, "-j", "1")
    timing(f"make autograde ({CLI})", time.time() - t0)
    assert done.returncode == 0 and "FAIL " not in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]

    with _gradebook(instructor_copy) as gb:
        scores = {s: {g.name: (g.score, g.max_score) for nb in gb.find_submission(GRADED, s).notebooks
                      for g in nb.grades if g.auto_score is not None}
                  for s in (REFERENCE, CLI)}
    assert scores[REFERENCE] == scores[CLI], "the Formgrader and `make autograde` disagree"
    lost = {k: v for k, v in scores[REFERENCE].items() if v[0] != v[1]}
    assert scores[REFERENCE] and not lost, f"the reference lost points in the Formgrader: {lost}"
    STATE["max_auto"] = sum(v[1] for v in scores[REFERENCE].values())
    # graded in the sandbox, scored outside it (graders/autograde.py)
    autograded = subs.read(instructor_copy / "graders/workspace/autograded" / REFERENCE / GRADED / f"{GRADED}.ipynb")
    assert any("agrees with the reference" in "".join(o.get("text", "")) for c in autograded.cells
               for o in c.get("outputs", [])), "no verdict from the sandbox in the autograded notebook"
    for student, log in logs.items():
        assert "has changed" not in log and "Unwritable" not in log, f"{student}: {log[-2000:]}"
    page.goto(instructor_server.link(f"/formgrader/manage_submissions/{GRADED}"))
    row = _row(page, "Lovelace")
    row.wait_for()
    assert f"{STATE['max_auto']:g}" in row.inner_text(), row.inner_text()


def test_manual_grading_persists(instructor_page, instructor_server, instructor_copy, browser):
    """Manual Grading -> the lesson -> its notebook -> ada's submission: a free-response score
    and comment typed in the form are saved and still there after a reload; the page's formulas
    are typeset by the MathJax this machine serves (no CDN)."""
    page = instructor_page
    with _gradebook(instructor_copy) as gb:
        free = sorted((c.name, c.max_score) for c in gb.find_notebook(GRADED, GRADED).grade_cells
                      if course.exercise_of(c.name).startswith("q"))
    assert free, f"{GRADED} has no free-response cell"
    gid, points = free[0]
    score, comment = points / 2, "Right idea; say which layer predicts scale and shift."
    page.goto(instructor_server.link("/formgrader/gradebook"))
    page.locator("a", has_text=GRADED).first.click()
    page.locator("#main-table a", has_text=GRADED).first.click()
    page.locator(".name-shown, .name-hidden").first.wait_for(state="attached")
    with page.expect_response(lambda r: "/formgrader/api/comments" in r.url, timeout=120_000):
        # the form is live once its grades and comments are loaded
        with page.expect_response(lambda r: "/formgrader/api/grades" in r.url, timeout=120_000):
            ada = page.locator("#main-table tr").filter(has=page.locator("a.name-shown", has_text="Lovelace"))
            ada.locator("a.name-hidden").first.click()     # names are hidden while grading
    page.locator(f"input.score#{gid}").wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    box = page.locator(f"input.score#{gid}")
    with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT"):
        box.fill(f"{score:g}")
        box.press("Tab")
    note = page.locator(f"textarea#{gid}-comment")
    with page.expect_response(lambda r: "/formgrader/api/comment/" in r.url and r.request.method == "PUT"):
        note.fill(comment)
        note.press("Tab")
    with page.expect_response(lambda r: "/formgrader/api/grades" in r.url, timeout=120_000):
        page.reload()
    page.locator(f"input.score#{gid}").wait_for()
    page.wait_for_function(f"() => document.querySelector('input.score#{gid}').value !== ''"
                           f" && document.querySelector('textarea#{gid}-comment').value !== ''", timeout=60_000)
    assert float(page.locator(f"input.score#{gid}").input_value()) == score
    assert page.locator(f"textarea#{gid}-comment").input_value() == comment
    with _gradebook(instructor_copy) as gb:
        grade = gb.find_grade(gid, GRADED, GRADED, REFERENCE)
        assert grade.manual_score == score and not grade.needs_manual_grade
        assert gb.find_comment(gid, GRADED, GRADED, REFERENCE).manual_comment == comment
    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                           " && document.querySelector('.MathJax, .MathJax_Display')", timeout=60_000)
    assert "Math Processing Error" not in page.inner_text("body")
    page.locator(".MathJax_Display, .MathJax").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "formgrader-manual-grading.png"))
    assert not browser.external_requests, f"requests off this machine: {browser.external_requests[:5]}"
    STATE["manual"] = (gid, score, comment)


def test_feedback_renders_formulas_offline(instructor_page, instructor_server, instructor_copy, browser):
    """Generate Feedback from the Formgrader; the HTML file, opened from disk with no network,
    typesets its formulas with the MathJax linked (hard links, not copies) next to it, and shows
    the instructor's comment."""
    page = instructor_page
    page.goto(instructor_server.link(f"/formgrader/manage_submissions/{GRADED}"))
    t0 = time.time()
    _row(page, "Lovelace").locator("td.generate-feedback a").click()
    kind, text = _modal(page)
    timing("Formgrader Generate Feedback", time.time() - t0)
    assert kind == "success", text[-2000:]
    folder = instructor_copy / "graders/workspace/feedback" / REFERENCE / GRADED
    html = folder / f"{GRADED}.html"
    assert html.is_file(), sorted(p.name for p in folder.iterdir()) if folder.exists() else "no feedback folder"
    import jupyter_server_mathjax

    packaged = Path(jupyter_server_mathjax.__file__).parent / "static" / "MathJax.js"
    linked = folder / "mathjax" / "MathJax.js"
    assert linked.is_file() and os.stat(linked).st_ino == os.stat(packaged).st_ino, "MathJax is not hard-linked"
    assert "cdnjs" not in html.read_text() and "cdn.jsdelivr" not in html.read_text()

    before = len(browser.external_requests)
    view = browser.new_page()
    view.goto(html.as_uri())
    view.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0"
                           " && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0", timeout=120_000)
    typeset = view.evaluate("() => document.querySelectorAll('.MathJax, .MathJax_Display').length")
    raw = view.evaluate(r"""() => Array.from(document.querySelectorAll('.text_cell_render'))
                              .map(e => e.innerText).filter(t => /\$[^$\s][^$]*\$/.test(t)).length""")
    view.locator(".MathJax_Display, .MathJax").first.scroll_into_view_if_needed()
    view.screenshot(path=str(ARTIFACTS / "feedback.png"))
    body = view.inner_text("body")
    assert "Math Processing Error" not in body
    view.close()
    assert typeset > 0 and raw == 0, f"{typeset} formulas typeset, {raw} cells still show raw $...$"
    assert STATE.get("manual", (None, None, ""))[2] in body, "the comment is not in the feedback"
    assert browser.external_requests[before:] == [], browser.external_requests[before:][:5]


def test_students_have_names(instructor_page, instructor_server):
    """Manage Students: the roster's names; a student who is not on the roster is listed by id,
    never as "None, None"."""
    page = instructor_page
    page.goto(instructor_server.link("/formgrader/manage_students"))
    page.locator("#main-table tr", has_text=CLI).first.wait_for()
    names = page.locator("#main-table tr td:first-child").all_inner_texts()
    assert "Lovelace, Ada" in names, names
    assert f"{CLI}, (not on the roster)" in names, names
    assert not [n for n in names if "None" in n], names


def test_instructor_server_log_is_quiet(instructor_server):
    """No tracebacks, no "checksum has changed!" for untouched submissions, no exchange or
    configuration warnings in the instructor server's log."""
    log = instructor_server.log()
    for bad in ("Traceback", "has changed!", "Unwritable directory", "not serializable",
                "No nbgrader_config.py", "exchange"):
        assert bad not in log, f"{bad!r} in the instructor server's log:\n" + \
            "\n".join(l for l in log.splitlines() if bad in l)[:3000]

