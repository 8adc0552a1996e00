"""Visible-test helpers: assertions whose messages teach.

Used by the visible test cells of every lesson. Each helper raises ``AssertionError`` with
a message that says what was expected (shape, dtype, tolerance), in the spirit of
Karpathy's ``cmp()``: exact / close / max difference.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["check_shape", "check_close", "check_dtype", "check_value", "passed", "needs", "NotReadyError"]


def passed(what: str = "") -> None:
    """The last line of a visible test cell: say, on stdout, that the asserts above held
    (a cell that prints nothing looks like a cell that merely ran)."""
    print(f"\u2714 visible tests passed{': ' + what if what else ''} "
          "(hidden tests run when your notebook is graded)")


class NotReadyError(RuntimeError):
    """A cell needs an exercise that is not solved yet (or a cell above that has not run)."""


def needs(ready: bool, what: str) -> None:
    """First line of a cell that depends on an exercise: stop with a message that names what is
    missing, instead of a bare ``KeyError`` or ``NameError`` further down."""
    if not ready:
        raise NotReadyError(f"this cell needs {what}: solve it, run the cells above again, then this one")


def _short(x: torch.Tensor) -> str:
    if x.numel() == 1:
        return f"{x.item():.6g}"
    return "[" + ", ".join(f"{v:.4g}" for v in x.flatten()[:6].tolist()) + (", ..." if x.numel() > 6 else "") + "]"


def check_value(actual, expected, name: str = "output", mistakes: dict | None = None,
                hint: str = "") -> None:
    """Assert ``actual == expected`` for exact values (ints, tuples, lists). ``mistakes`` maps
    values that common mistakes produce (worked out in advance) to an explanation."""
    if actual == expected:
        return
    for wrong, explanation in (mistakes or {}).items():
        if actual == wrong:
            raise AssertionError(f"{name} should be {expected!r}, got {actual!r}: {explanation}")
    raise AssertionError(f"{name} should be {expected!r}, got {actual!r}." + (f" {hint}" if hint else ""))


def check_shape(x, expected: Sequence[int], name: str = "output", hint: str = "") -> None:
    """Assert ``x`` is a tensor of exactly ``expected`` shape."""
    assert isinstance(x, torch.Tensor), f"{name} should be a torch.Tensor, got {type(x).__name__}"
    assert tuple(x.shape) == tuple(expected), (
        f"{name} has shape {tuple(x.shape)}, expected {tuple(expected)}." + (f" {hint}" if hint else ""))


def check_dtype(x: torch.Tensor, expected: torch.dtype, name: str = "output") -> None:
    assert x.dtype == expected, f"{name} has dtype {x.dtype}, expected {expected}."


def check_close(actual, expected, name: str = "output", atol: float = 1e-5,
                rtol: float = 1e-5, hint: str = "", mistakes: Sequence = ()) -> None:
    """Assert two tensors agree within ``atol + rtol * |expected|``; report the worst entry.

    ``mistakes``: (wrong value, explanation) pairs, values worked out in advance for common
    mistakes; when ``actual`` matches one, its explanation is the message.
    """
    expected = torch.as_tensor(expected, dtype=torch.float64)
    check_shape(actual, tuple(expected.shape), name)
    a = actual.detach().to("cpu", torch.float64)
    err = (a - expected).abs()
    bound = atol + rtol * expected.abs()
    if bool((err <= bound).all()):
        return
    for wrong, explanation in mistakes:
        w = torch.as_tensor(wrong, dtype=torch.float64)
        if w.shape == a.shape and bool(((a - w).abs() <= atol + rtol * w.abs() + 1e-6).all()):
            raise AssertionError(f"{name} is off (yours {_short(a)}, expected {_short(expected)}): {explanation}")
    idx = tuple(int(i) for i in torch.nonzero(err - bound == (err - bound).max())[0])
    raise AssertionError(
        f"{name} is off: max |difference| = {err.max().item():.3g} at index {idx} "
        f"(yours {a[idx].item():.6g}, expected {expected[idx].item():.6g}; "
        f"tolerance {atol:g} + {rtol:g}*|expected|)." + (f" {hint}" if hint else ""))
