# The student's Jupyter server (`make lab`; graders/jupyter/serve.py puts this folder first on
# JUPYTER_CONFIG_PATH). jupyter_server_config.json next to it turns nbgrader's instructor
# extensions off; labconfig/page_config.json hides their menus.
#
# Widgets on disk. A widget lives only as long as its kernel: a notebook saved with a widget's
# output shows, once reopened, an empty output and "widget model not found" in the console.
# When a notebook is saved, each widget output is written as one line of text saying how to
# get the widget back; the open notebook keeps its live widget.
WIDGET = "application/vnd.jupyter.widget-view+json"
NOTE = "[an interactive widget: run this cell to use it again]"


def widgets_to_text(model=None, **_):
    if not isinstance(model, dict) or model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    for cell in model["content"].get("cells") or []:
        for out in cell.get("outputs") or [] if isinstance(cell, dict) else []:
            data = out.get("data") if isinstance(out, dict) else None
            if isinstance(data, dict) and WIDGET in data:
                out["data"] = {"text/plain": NOTE}


c.ContentsManager.pre_save_hook = widgets_to_text  # noqa: F821 (provided by traitlets)
