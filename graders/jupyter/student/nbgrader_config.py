# nbgrader's Validate button in the student's JupyterLab (`make lab`) reads this file (this
# folder is on JUPYTER_CONFIG_PATH). It runs the whole notebook as grading does: a cell that runs
# longer than 60 s is stopped; the kernel is quiet.
c = get_config()  # noqa: F821 (provided by traitlets)
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]
