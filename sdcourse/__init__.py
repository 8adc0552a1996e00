"""sdcourse: the helper package of Module 6.3 "Architecture & Conditioning".

Notebooks import what they need in one line, e.g. ``from sdcourse import get_device, plots``.
Machinery lives here (device choice, model loading by tier, synthetic data, figures,
widgets, visible-test helpers); the narrative and the exercises live in the notebooks.
"""
from .device import get_device
from . import plots, testing, widgets

__all__ = ["get_device", "plots", "testing", "widgets"]
__version__ = "0.1.0"
