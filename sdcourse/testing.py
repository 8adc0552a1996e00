"""Visible-test helpers: assertions whose messages teach.

Used by the visible test cells of every lesson. Each helper raises ``AssertionError`` with
a message that says what was expected (shape, dtype, tolerance), in the spirit of
Karpathy's ``cmp()``: exact / close / max difference.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["check_shape", "check_close", "check_dtype"]


def check_shape(x, expected: Sequence[int], name: str = "output", hint: str = "") -> None:
    """Assert ``x`` is a tensor of exactly ``expected`` shape."""
    assert isinstance(x, torch.Tensor), f"{name} should be a torch.Tensor, got {type(x).__name__}"
    assert tuple(x.shape) == tuple(expected), (
        f"{name} has shape {tuple(x.shape)}, expected {tuple(expected)}." + (f" {hint}" if hint else ""))


def check_dtype(x: torch.Tensor, expected: torch.dtype, name: str = "output") -> None:
    assert x.dtype == expected, f"{name} has dtype {x.dtype}, expected {expected}."


def check_close(actual, expected, name: str = "output", atol: float = 1e-5,
                rtol: float = 1e-5, hint: str = "") -> None:
    """Assert two tensors agree within ``atol + rtol * |expected|``; report the worst entry."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    check_shape(actual, tuple(expected.shape), name)
    a = actual.detach().to("cpu", torch.float64)
    err = (a - expected).abs()
    bound = atol + rtol * expected.abs()
    if bool((err <= bound).all()):
        return
    idx = tuple(int(i) for i in torch.nonzero(err - bound == (err - bound).max())[0])
    raise AssertionError(
        f"{name} is off: max |difference| = {err.max().item():.3g} at index {idx} "
        f"(yours {a[idx].item():.6g}, expected {expected[idx].item():.6g}; "
        f"tolerance {atol:g} + {rtol:g}*|expected|)." + (f" {hint}" if hint else ""))
