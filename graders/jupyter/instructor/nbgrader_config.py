# The instructor's JupyterLab (`make formgrader`, graders/jupyter/serve.py) finds nbgrader's
# configuration here, through JUPYTER_CONFIG_PATH: it is the course's one config file,
# graders/nbgrader_config.py, so that the Formgrader grades exactly as `make autograde` does.
import os

load_subconfig(os.path.normpath(os.path.join(  # noqa: F821 (provided by traitlets)
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "nbgrader_config.py")))
