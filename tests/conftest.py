import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

BROWSER = Path(__file__).resolve().parent / "browser"


def pytest_ignore_collect(collection_path, config):
    """tests/browser/ (JupyterLab in headless Chromium, minutes) runs only when named on the
    command line (`make test-browser`: pytest tests/browser), never as part of `pytest tests`."""
    if Path(collection_path).resolve() != BROWSER:
        return None
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        asked = (base / arg.split("::")[0]).resolve()
        if asked == BROWSER or BROWSER in asked.parents:
            return None
    return True
