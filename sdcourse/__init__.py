"""sdcourse: the helper package of Module 6.3 "Architecture & Conditioning".

Notebooks import what they need in one line, e.g.
``from sdcourse import get_device, testing, l2_conditioning as l2``. Machinery lives here;
the narrative and the exercises live in the notebooks. Nothing is imported until it is
used (``from sdcourse import shapes`` does not pull in matplotlib or ipywidgets).

Shared core
    device        get_device(): CUDA, MPS or CPU (SDCOURSE_DEVICE overrides)
    testing       visible-test assertions whose messages teach
    shapes        the procedural "shapes world" (images + captions, fixed splits, pixel judge)
    models        load_clip / load_vae / load_pipeline by tier ("auto", "tiny", "full")
    figures       small drawing helpers shared by the lessons' figures

One module per lesson (its figures, widgets and experiments; never an exercise's answer)
    l1_unet, l2_conditioning, l3_clip, l4_guidance, l5_latents

Instructor build tooling (notebooks never import it)
    tiny          trainers and evaluation of the tiny offline models (make tiny-models)
"""
from __future__ import annotations

import importlib

__all__ = ["get_device", "device", "testing", "shapes", "models", "figures"]
__version__ = "0.2.0"


def __getattr__(name: str):
    if name == "get_device":
        from .device import get_device
        return get_device
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise AttributeError(f"module 'sdcourse' has no attribute {name!r}") from None
        raise
