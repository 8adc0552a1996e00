"""Pick the compute device once, the same way in every notebook.

Notebooks never write ``.cuda()``: they ask :func:`get_device` and move tensors with
``.to(device)``. ``SDCOURSE_DEVICE=cpu`` (or ``cuda``, ``mps``) overrides the choice.
"""
from __future__ import annotations

import os

import torch

__all__ = ["get_device"]


def get_device(prefer: str | None = None) -> torch.device:
    """Return ``torch.device`` for the best available accelerator, else the CPU.

    Order: the ``prefer`` argument, then ``$SDCOURSE_DEVICE``, then CUDA, Apple MPS, CPU.
    """
    choice = prefer or os.environ.get("SDCOURSE_DEVICE")
    if choice:
        dev = torch.device(choice)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {choice!r} was requested but CUDA is not available here; "
                "unset SDCOURSE_DEVICE or set it to 'cpu'."
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
