"""Interactive controls (ipywidgets). Each returns a widget the notebook displays.

The widgets take the student's own functions/modules as arguments, so what moves on screen
is the student's code. They run without a browser too (nbval, nbgrader): building the
widget draws its first frame.
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from .plots import bars

__all__ = ["timestep_explorer"]


def timestep_explorer(timestep_embedding: Callable, mlp: torch.nn.Module,
                      adagn: torch.nn.Module, dim: int, num_steps: int = 1000):
    """Slider over t: the sinusoidal embedding, then the (1 + scale) and shift that an
    AdaGroupNorm derives from the MLP's output for every channel.

    ``timestep_embedding(t, dim)`` -> [N, dim]; ``mlp``: [N, dim] -> [N, E];
    ``adagn.linear``: [N, E] -> [N, 2C] (first half scale, second half shift).
    """
    out = widgets.Output()
    slider = widgets.IntSlider(value=500, min=0, max=num_steps - 1, step=1,
                               description="t", continuous_update=False,
                               layout=widgets.Layout(width="60%"))

    def draw(t: int) -> None:
        with torch.no_grad():
            emb = timestep_embedding(torch.tensor([t]), dim)
            scale, shift = adagn.linear(mlp(emb)).chunk(2, dim=-1)
        out.clear_output(wait=True)
        with out:
            fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
            bars(axes[0], emb[0], f"sinusoidal embedding of t={t}", ylim=(-1.1, 1.1))
            bars(axes[1], 1 + scale[0], "gamma(t) = 1 + scale, per channel", color="C1")
            bars(axes[2], shift[0], "beta(t) = shift, per channel", color="C2")
            for ax in axes[1:]:
                ax.set_xlabel("channel")
            axes[0].set_xlabel("dimension")
            fig.tight_layout()
            plt.show()

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    return widgets.VBox([slider, out])
