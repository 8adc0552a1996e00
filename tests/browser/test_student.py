"""The student's side, in JupyterLab (`make lab`): every lesson of the release, blank and with the
reference answers, through Run All, figures, widgets, pass lines and Validate."""
from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from graders import course

from .conftest import ARTIFACTS, REFERENCE_DIR, timing
from .harness import src, text_of

LESSONS = course.assignments()
# Validate runs the whole notebook again on the server (lesson 5: 100 s on 2 busy cores), so the
# suite validates one lesson, the quickest with a widget: its reference (success) and its
# blank release (the failures a student sees).
VALIDATED = next((l for l in course.lessons() if l.number == 2), course.lessons()[0]).assignment
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PASS_LINE = "visible tests passed"
SEEN: dict[str, dict] = {}          # per lesson: what the browser showed (artifacts/observations.json)


def _note(aid: str, **kw) -> None:
    SEEN.setdefault(aid, {}).update(kw)
    (ARTIFACTS / "observations.json").write_text(json.dumps(SEEN, indent=1))


def _is_test(cell: dict) -> bool:
    nb = cell.get("nbgrader") or {}
    return cell["type"] == "code" and bool(nb.get("grade")) and not nb.get("solution")


def _errors(state: dict) -> list[tuple[int, str]]:
    return [(i, text_of(o)) for i, c in enumerate(state["cells"]) for o in c["outputs"]
            if o.get("output_type") == "error"]


def _cell_seconds(lab) -> list[tuple[int, float]]:
    """(cell index, seconds) from JupyterLab's execution timing (recordTiming), slowest first."""
    times = lab.page.evaluate("""() => {
      const w = window.jupyterapp.shell.currentWidget, out = [];
      for (let i = 0; i < w.content.model.cells.length; i++) {
        const ex = w.content.model.cells.get(i).getMetadata('execution');
        if (ex && ex['iopub.execute_input'] && ex['shell.execute_reply'])
          out.push([i, (Date.parse(ex['shell.execute_reply']) - Date.parse(ex['iopub.execute_input'])) / 1000]);
      }
      return out; }""")
    return sorted(times, key=lambda t: -t[1])


def _check_figures(lab, state: dict) -> int:
    """Every image output JupyterLab holds is drawn as a loaded <img> of non-zero size."""
    expected = sum(1 for c in state["cells"] for o in c["outputs"]
                   if "image/png" in o.get("data", {}) or "image/jpeg" in o.get("data", {}))
    imgs = lab.current_panel().locator(".jp-OutputArea-output img")
    n = imgs.count()
    assert n >= expected, f"{expected} image outputs, {n} drawn"
    bad = []
    for i in range(n):
        img = imgs.nth(i)
        img.scroll_into_view_if_needed()
        ok = img.evaluate("im => im.complete && im.naturalWidth > 0 && im.getBoundingClientRect().height > 0")
        if not ok:
            bad.append(i)
    assert not bad, f"images {bad} did not render"
    return n


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _widget_outputs(state: dict) -> list[int]:
    return [i for i, c in enumerate(state["cells"]) for o in c["outputs"] if WIDGET_MIME in o.get("data", {})]


SHOWN = """el => Array.from(el.querySelectorAll('img')).map(i => i.src).join('|') + '#'
          + Array.from(el.querySelectorAll('.widget-output')).map(o => o.innerText).join('|')"""


def _signature(area) -> str:
    """What a widget displays (its images, Image or Output widgets, and its Output text; not
    its controls' own readouts), hashed; "" while it shows nothing."""
    s = area.evaluate(SHOWN)
    return hashlib.sha1(s.encode()).hexdigest() if s.strip("#|") else ""


def _operate(widget) -> str:
    """Move the widget's first control as a person would: a slider one step right (keyboard),
    the next dropdown entry, or a new text followed by Enter. Returns what was done."""
    handle = widget.locator(".noUi-handle").first
    if handle.count():
        handle.focus()
        handle.press("ArrowRight")
        return "slider +1 step"
    select = widget.locator(".widget-dropdown select").first
    if select.count():
        options = select.locator("option")
        select.select_option(index=1 if options.count() > 1 else 0)
        return "dropdown -> entry 2"
    box = widget.locator(".widget-text input[type=text]").first
    if box.count():
        value = box.input_value()
        box.fill("a blue square" if value != "a blue square" else "a red circle")
        box.press("Enter")
        return "text -> 'a blue square' + Enter"
    raise AssertionError("the widget has no slider, dropdown or text box to move")


def _check_widgets(lab, state: dict, aid: str) -> dict:
    cells = _widget_outputs(state)
    panel = lab.current_panel()
    for i in cells:
        area = panel.locator(".jp-Cell").nth(i).locator(".jp-OutputArea-output")
        area.first.scroll_into_view_if_needed()
        text = area.first.inner_text()
        assert "Error displaying widget" not in text, f"cell {i}: {text[:300]}"
        lab.page.wait_for_function(
            "el => el.querySelector('.jupyter-widgets, .widget-box, .widget-inline-hbox')",
            arg=area.first.element_handle(), timeout=30_000)
    if not cells:
        return {"widgets": 0}
    # A widget responds: the first widget's output changes after one move of its control.
    i = cells[0]
    area = panel.locator(".jp-Cell").nth(i).locator(".jp-OutputArea-output").first
    area.scroll_into_view_if_needed()
    lab.page.wait_for_function(f"el => ({SHOWN})(el).replace(/[#|]/g, '').trim().length > 0",
                               arg=area.element_handle(), timeout=60_000)
    before = _signature(area)
    area.screenshot(path=str(ARTIFACTS / f"widget-{aid}-before.png"))
    t0 = time.time()
    action = _operate(area)
    while time.time() - t0 < 60:
        now = _signature(area)
        if now and now != before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"cell {i}: the widget's output did not change within 60 s after {action}")
    seconds = time.time() - t0
    time.sleep(0.5)
    area.screenshot(path=str(ARTIFACTS / f"widget-{aid}-after.png"))
    return {"widgets": len(cells), "widget_cell": i, "widget_action": action,
            "widget_response_s": round(seconds, 2)}


def _validate(lab, timeout: float = 300_000) -> tuple[str, str, float]:
    """Click Validate (saves, then nbgrader runs the notebook on the server); return the
    dialog's result class, its text and the seconds it took."""
    panel = lab.current_panel()
    button = panel.locator(".jp-Toolbar jp-button, .jp-Toolbar button").filter(has_text="Validate").first
    t0 = time.time()
    button.click()
    dialog = lab.page.locator(".jp-Dialog").filter(has_text="Validation Results")
    dialog.wait_for(timeout=timeout)
    seconds = time.time() - t0
    body = dialog.locator(".validation-success, .validation-failed").first
    kind = body.get_attribute("class") if body.count() else "error"
    text = dialog.inner_text()
    dialog.locator("button", has_text="Ok").first.click()
    return kind or "", text, seconds


# --------------------------------------------------------------------------- the tests

def test_student_lab_offers_validate_only(student_lab, student_server):
    """No Formgrader, Create Assignment, course or assignment list in the student's Lab, nor
    their server extensions; the Validate endpoint is there."""
    page = student_lab.page
    menus = page.locator(".lm-MenuBar-item").all_inner_texts()
    assert "Nbgrader" not in [m.strip() for m in menus], menus
    commands = page.evaluate("""() => ['nbgrader:open-formgrader', 'nbgrader:open-assignment-list',
        'nbgrader:open-course-list', 'nbgrader:open-create-assignment']
        .filter(c => window.jupyterapp.commands.hasCommand(c))""")
    assert commands == [], f"instructor commands in the student's Lab: {commands}"
    for path in ("/formgrader", "/assignments", "/courses"):
        status = page.request.get(student_server.link(path)).status
        assert status == 404, f"{path} answered {status} on the student's server"
    version = page.request.get(student_server.link("/nbgrader_version?version=0.9.6"))
    assert version.ok and version.json()["success"], "nbgrader's Validate endpoint is missing"
    specs = student_server.api("GET", "/api/kernelspecs")
    assert specs["default"] == "python3"


@pytest.mark.parametrize("aid", LESSONS)
def test_blank_release(student_lab, aid):
    """The release as a student opens it: it speaks to the student, carries no nbval markers
    and no outputs, runs on the venv's kernel, and Run All stops at the first unsolved exercise
    with NotImplementedError pointing at `# YOUR CODE HERE`; everything before it works."""
    lab = student_lab
    mark = len(lab.console.messages)
    t0 = time.time()
    state = lab.open_notebook(f"{aid}/{aid}.ipynb")
    timing(f"{aid}: open blank release", time.time() - t0)
    assert state["kernelName"] == "Python 3 (ipykernel)"
    banner = src(state["cells"][0])
    assert state["cells"][0]["type"] == "markdown" and "Your copy of lesson" in banner, banner[:200]
    assert "AUTOGENERATED" not in banner.upper() and "do not edit" not in banner.lower()
    assert not [i for i, c in enumerate(state["cells"]) if "NBVAL" in src(c)], "nbval markers in the release"
    assert not [i for i, c in enumerate(state["cells"]) if c["outputs"]], "the release carries outputs"

    state, seconds = lab.run_all()
    timing(f"{aid}: Run All on the blank release (to the first error)", seconds)
    errors = _errors(state)
    assert errors, "Run All on the blank release raised nothing: is an exercise already solved?"
    first, _ = errors[0]
    err = next(o for o in state["cells"][first]["outputs"] if o.get("output_type") == "error")
    trace = ANSI.sub("", "\n".join(err.get("traceback", [])))
    first_solution = next(i for i, c in enumerate(state["cells"]) if (c.get("nbgrader") or {}).get("solution")
                          and c["type"] == "code")
    _note(aid, blank_first_error={"cell": first, "error": f"{err.get('ename')}: {err.get('evalue')}"})
    assert first >= first_solution, f"cell {first} fails before the first exercise: {errors[0][1]}"
    assert err.get("ename") == "NotImplementedError", f"cell {first}: {errors[0][1]}"
    assert "YOUR CODE HERE" in trace, f"the traceback does not show the stub:\n{trace[-1500:]}"
    ran = [i for i, c in enumerate(state["cells"]) if c["type"] == "code" and c["count"] is not None]
    assert ran and max(ran) == first, "Run All did not stop at the first error"
    figures = _check_figures(lab, state)
    console = [m for m in lab.console.since(mark) if "model not found" in m.lower()]
    assert not console, console
    _note(aid, blank_figures_before_first_error=figures)
    lab.close_all()


@pytest.mark.parametrize("aid", LESSONS)
def test_reference_answers(student_lab, aid):
    """The reference answers in the student's Lab: Run All raises nothing, every figure and
    widget renders, a widget answers a move of its control, every test cell prints its pass
    line; (lesson VALIDATED) Validate says the notebook passes, and the notebook it saved, reopened,
    shows no dead widget."""
    lab = student_lab
    mark = len(lab.console.messages)
    state = lab.open_notebook(f"{REFERENCE_DIR}/{aid}/{aid}.ipynb")
    state, seconds = lab.run_all()
    timing(f"{aid}: Run All on the reference answers", seconds)
    slow = _cell_seconds(lab)[:3]
    _note(aid, run_all_s=round(seconds, 1), slowest_cells=slow)
    errors = _errors(state)
    assert not errors, f"errors in the reference run: {errors[:3]}"
    skipped = [i for i, c in enumerate(state["cells"]) if c["type"] == "code" and c["count"] is None
               and src(c).strip()]
    assert not skipped, f"cells that did not run: {skipped}"
    _note(aid, figures=_check_figures(lab, state))
    _note(aid, **_check_widgets(lab, state, aid))
    tests = [i for i, c in enumerate(state["cells"]) if _is_test(c)]
    silent = [i for i in tests
              if not any(PASS_LINE in text_of(o) for o in state["cells"][i]["outputs"]
                         if o.get("output_type") == "stream" and o.get("name") == "stdout")]
    _note(aid, test_cells=len(tests), test_cells_without_pass_line=silent)
    stderr = [i for i, c in enumerate(state["cells"]) for o in c["outputs"]
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    _note(aid, cells_with_stderr=stderr,
          console_errors=[m[:200] for m in lab.console.since(mark) if m.startswith(("error", "pageerror"))][:5])
    if aid == VALIDATED:
        kind, text, vseconds = _validate(lab)
        timing(f"{aid}: Validate the reference answers", vseconds)
        _note(aid, validate_s=round(vseconds, 1))
        assert "validation-success" in kind, text[:1500]
        # Validate saved the notebook: reopened, its widget outputs say how to get the widget
        # back (graders/jupyter/student/jupyter_server_config.py), no "widget model not found"
        widget_cells = _widget_outputs(state)
        lab.close_all()
        mark = len(lab.console.messages)
        reopened = lab.open_notebook(f"{REFERENCE_DIR}/{aid}/{aid}.ipynb")
        shown = [text_of(o) for i in widget_cells for o in reopened["cells"][i]["outputs"]]
        assert shown and all("run this cell to use it again" in t for t in shown), shown
        assert not [m for m in lab.console.since(mark) if "model not found" in m.lower()]
    assert not silent, f"test cells that pass silently (no '{PASS_LINE}' line): {silent}"
    lab.close_all()


def test_student_server_log_is_quiet(student_server, student_lab):
    """The student's server logs no nbgrader tracebacks (no course list, no Formgrader)."""
    log = student_server.log()
    for bad in ("Traceback", "Error fetching courses", "Loading the formgrader", "Loading the course_list",
                "Loading the assignment_list", "No nbgrader_config.py"):
        assert bad not in log, f"{bad!r} in the student server's log"
