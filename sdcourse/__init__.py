"""sdcourse: the helper package of Module 6.3 "Architecture & Conditioning".

Notebooks import what they need in one line, e.g. ``from sdcourse import get_device, plots``.
Machinery lives here; the narrative and the exercises live in the notebooks.

    device        get_device(): CUDA, MPS or CPU (SDCOURSE_DEVICE overrides)
    testing       visible-test assertions whose messages teach
    plots, widgets   shared figures and ipywidgets controls (lesson 2)
    unet_parts, unet_figures, denoising   lesson 1: ResBlock, receptive-field tools, the
                  drawn U, the skip vs no-skip experiment
    clip_lab      lesson 3: CLIP figures, the caption widget, limitation probes, a toy CLIP
    shapes        the procedural "shapes world" (images + captions, fixed splits)
    models        load_clip / load_vae / load_pipeline by tier ("auto", "tiny", "full")
    tiny          trainers and evaluation of the tiny offline models (make tiny-models)
"""
from .device import get_device
from . import plots, testing, widgets

__all__ = ["get_device", "plots", "testing", "widgets"]
__version__ = "0.1.0"
