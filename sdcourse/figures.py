"""Small drawing helpers shared by the lessons' figures (matplotlib; ipywidgets only inside figure_view).

Lesson modules (``sdcourse.l<N>_*``) build their figures from these; notebooks rarely need
them directly.
"""
from __future__ import annotations

import io
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["to_numpy", "bars", "thumbnails", "to_image", "image_row", "box", "arrow", "png_bytes", "figure_view"]


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, any float dtype) or array-like as a NumPy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def bars(ax, values, title: str, ylim: Sequence[float] | None = None, color: str = "C0"):
    """Bar chart of a 1-D vector on an existing axis."""
    v = to_numpy(values)
    ax.bar(np.arange(len(v)), v, color=color)
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.axhline(0, color="grey", lw=0.6)
    return ax


def thumbnails(images, size: int = 48) -> list[np.ndarray]:
    """PIL images -> (size, size, 3) uint8 arrays."""
    return [np.asarray(im.convert("RGB").resize((size, size))) for im in images]


def to_image(x) -> np.ndarray:
    """An image as an (H, W, 3) array in [0, 1] for ``imshow``: a [3, H, W] or [1, 3, H, W]
    tensor in [0, 1], an (H, W, 3) array, or a PIL image."""
    if hasattr(x, "convert"):  # PIL
        return np.asarray(x.convert("RGB"), dtype=np.float32) / 255.0
    a = to_numpy(x)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    return np.clip(a, 0.0, 1.0)


def image_row(images, titles: Sequence[str] | None = None, size: float = 2.2, suptitle: str = ""):
    """One row of images (tensors in [0, 1], arrays or PIL images) with optional titles."""
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size + 0.5), squeeze=False)
    for i, (ax, im) in enumerate(zip(axes[0], images)):
        ax.imshow(to_image(im), interpolation="nearest")
        ax.set_xticks([]); ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- diagrams

def box(ax, x: float, y: float, w: float, h: float, text: str, color: str = "#dddddd",
        fontsize: float = 8.5, edgecolor: str = "k"):
    """A labelled rectangle centred at (x, y) on a diagram axis (data coordinates)."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                facecolor=color, edgecolor=edgecolor, lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(ax, start, end, color: str = "k", text: str | None = None, ls: str = "-",
          text_offset=(0.0, 0.08), fontsize: float = 8, connectionstyle: str = "arc3"):
    """An arrow from ``start`` to ``end`` (data coordinates), optionally labelled at its middle."""
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color=color, lw=1.2,
                                 linestyle=ls, connectionstyle=connectionstyle, shrinkA=0, shrinkB=0))
    if text:
        ax.text((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1], text,
                ha="center", va="bottom", fontsize=fontsize, color=color)


def png_bytes(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def figure_view(dpi: int = 80) -> tuple[object, Callable]:
    """``(view, show)``: an ``ipywidgets.Image`` and ``show(fig)``, which draws ``fig`` into it as
    a PNG (and closes it). A widget redraws by replacing the picture, so the panels keep their
    size and place while a control moves. No ``Output`` widget is involved: executing
    ``Output`` + ``plt.show()`` headless (nbval, nbgrader) can stall (nbclient issue #312)."""
    import ipywidgets as widgets

    view = widgets.Image(format="png")

    def show(fig) -> None:
        view.value = png_bytes(fig, dpi)

    return view, show
