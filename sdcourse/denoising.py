"""A short, seeded denoising experiment on CPU (lesson 6-3-1, skip vs no-skip U-Nets).

Images come from the procedural shapes world (:mod:`sdcourse.shapes`): flat coloured
shapes whose only fine detail is their edges, which makes "blurry" easy to see and to
measure. The task is to predict the clean image ``x0`` from ``x0 + sigma * noise``
(one fixed, light noise level, like a late step of the sampler).

Cost: about 100 Adam steps on batches of 16 random 16x16 crops, a few seconds per model on
one CPU core. Training always runs on the CPU with one thread, so that the same seed gives
the same numbers on every machine (and small convolutions gain nothing from more threads).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import shapes

__all__ = ["make_images", "add_noise", "train_denoiser", "denoise", "one_thread"]


def make_images(n: int, split: str = "train", seed: int = 0, size: int = 32) -> torch.Tensor:
    """``n`` shapes-world images as a float tensor [n, 3, size, size] scaled to [-1, 1]."""
    items = shapes.make_dataset(n, split, seed=seed, size=size, as_tensor=True)
    return torch.stack([img for img, _, _ in items]) * 2 - 1


def add_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``images + sigma * noise`` with a seeded standard normal noise."""
    g = torch.Generator().manual_seed(seed)
    return images + sigma * torch.randn(images.shape, generator=g)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_denoiser(model: nn.Module, images: torch.Tensor, steps: int = 100,
                   batch_size: int = 16, crop: int = 16, sigma: float = 0.1,
                   lr: float = 1e-2, seed: int = 0) -> list[float]:
    """Train ``model`` (in place, on the CPU) to map ``x0 + sigma * noise`` back to ``x0``.

    Each step draws ``batch_size`` training images, one random ``crop`` x ``crop`` window
    (a fully convolutional network trains on crops and runs on whole images), fresh noise,
    and takes one Adam step on the mean squared error. Returns the loss of every step.
    """
    g = torch.Generator().manual_seed(seed)
    model.to("cpu").train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    size = images.shape[-1]
    losses = []
    with one_thread():
        for _ in range(steps):
            x0 = images[torch.randint(0, len(images), (batch_size,), generator=g)]
            oy, ox = torch.randint(0, size - crop + 1, (2,), generator=g).tolist()
            x0 = x0[..., oy:oy + crop, ox:ox + crop]
            noisy = x0 + sigma * torch.randn(x0.shape, generator=g)
            loss = F.mse_loss(model(noisy), x0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def denoise(model: nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    """The model's prediction of the clean images (CPU, no gradient)."""
    with one_thread():
        return model.to("cpu").eval()(noisy)
