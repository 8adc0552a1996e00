"""Machinery shared by every hidden check (instructor-only; never shipped to students).

A hidden check has three separate steps so that execution and scoring can later run in
different processes:

    inputs  = make_inputs(seed)          # fresh, seeded tensors (odd sizes, batch 1, ...)
    outputs = run_student(obj, inputs)   # the ONLY step that executes student code,
                                         #   inside ``forbid(...)`` so the library oracle
                                         #   cannot be called from it
    compare(inputs, outputs)             # the oracle + a diagnosis naming the misconception

:func:`run_check` chains them, silently: nothing reaches stderr (nbgrader scores any stderr
output in a test cell as 0), and every failure is an ``AssertionError`` written for the
student.
"""
from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch


class CheckFailed(AssertionError):
    """A hidden check failed; the message is meant for the student."""


# --------------------------------------------------------------------------- running


def run_check(make_inputs: Callable[[int], Any], run_student: Callable[[Any], Any],
              compare: Callable[[Any, Any], None], seeds: Iterable[int],
              forbidden: Iterable[str] = ()) -> None:
    """make inputs -> run the student's code under ``forbid`` -> compare, for every seed."""
    with quiet():
        assert_untampered()
        for seed in seeds:
            inputs = make_inputs(seed)
            with forbid(forbidden):
                try:
                    outputs = run_student(inputs)
                except (CheckFailed, OracleCalled):
                    raise
                except NotImplementedError:
                    raise CheckFailed("not implemented yet: the solution cell still raises "
                                      "NotImplementedError") from None
                except Exception as exc:  # the student's code crashed on a fresh input
                    raise CheckFailed(
                        f"your code raised {type(exc).__name__}: {exc}\n"
                        f"on a fresh input: {describe(inputs)}") from None
            compare(inputs, outputs)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow warnings and anything written to stderr (nbgrader scores stderr as 0)."""
    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        yield


def describe(inputs: Any) -> str:
    """Short human description of an input dict: shapes and dtypes, not values."""
    if isinstance(inputs, dict):
        return ", ".join(f"{k}={describe(v)}" for k, v in inputs.items()
                         if not k.startswith("_"))
    if isinstance(inputs, torch.Tensor):
        return f"tensor{tuple(inputs.shape)} {str(inputs.dtype).replace('torch.', '')}"
    if isinstance(inputs, torch.nn.Module):
        return type(inputs).__name__
    return repr(inputs)


# --------------------------------------------------------------------------- oracles


class OracleCalled(CheckFailed):
    pass


@contextlib.contextmanager
def forbid(targets: Iterable[str]) -> Iterator[None]:
    """Make the library oracle unusable while the student's code runs.

    ``targets`` are dotted paths ("torch.nn.functional.group_norm"). Each is replaced at its
    home module AND wherever the notebook bound it by name (``from x import f`` puts ``f`` in
    the notebook's globals), so an answer that merely wraps the oracle fails loudly.
    """
    patched: list[tuple[Any, str, Any]] = []
    main = sys.modules.get("__main__")
    try:
        for path in targets:
            module_name, _, attr = path.rpartition(".")
            owner = _resolve(module_name)
            original = getattr(owner, attr)
            trap = _trap(path, original)
            patched.append((owner, attr, original))
            setattr(owner, attr, trap)
            if main is not None:
                for name, value in list(vars(main).items()):
                    if value is original:
                        patched.append((main, name, original))
                        setattr(main, name, trap)
        yield
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


def _resolve(dotted: str) -> Any:
    """Import ``a.b.c`` where ``c`` may be a class inside module ``a.b``."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        parent, _, attr = dotted.rpartition(".")
        return getattr(importlib.import_module(parent), attr)


def _trap(path: str, original: Any) -> Any:
    message = (f"your code calls the library reference `{path}`; this exercise asks you to "
               "write it yourself (the hidden test compares you against that library).")
    if isinstance(original, type):
        class Trap(original):  # type: ignore[misc, valid-type]
            def __init__(self, *a, **k):
                raise OracleCalled(message)

            def __new__(cls, *a, **k):
                raise OracleCalled(message)
        Trap.__name__ = original.__name__
        return Trap

    def trap(*args, **kwargs):
        raise OracleCalled(message)
    return trap


def assert_no_oracle_modules(module: torch.nn.Module, classes: Iterable[type]) -> None:
    """A student's ``nn.Module`` must not simply contain the library class it re-implements."""
    for sub in module.modules():
        for cls in classes:
            if isinstance(sub, cls):
                raise OracleCalled(
                    f"your module contains a `{cls.__module__}.{cls.__name__}`; this exercise "
                    "asks you to build it from nn.Linear and your own forward pass.")


# The comparisons below rely on these; a notebook that replaces one of them (to make every
# comparison pass) gets no points instead.
_WATCHED = [
    (torch, ["allclose", "isclose", "equal", "abs", "max", "tensor", "as_tensor"]),
    (torch.Tensor, ["__sub__", "abs", "max", "item", "tolist", "numpy", "detach", "cpu",
                    "float", "double", "__eq__", "__lt__", "__gt__"]),
    (np, ["allclose", "isclose", "abs", "max", "asarray", "array_equal", "argmax"]),
    (builtins, ["abs", "max", "min", "float", "isinstance", "len", "all", "any"]),
]


def assert_untampered() -> None:
    for owner, names in _WATCHED:
        for name in names:
            obj = getattr(owner, name, None)
            module = getattr(obj, "__module__", None) or ""
            if module == "__main__" or module.startswith("ipykernel") or "<" in module:
                raise CheckFailed(
                    f"`{getattr(owner, '__name__', owner)}.{name}` has been replaced by code "
                    "in this notebook; the grader cannot trust comparisons, so this test "
                    "gives no points. Restart the kernel and remove the monkeypatch.")


# --------------------------------------------------------------------------- comparing


@dataclass
class Suspect:
    """A known-wrong answer the student's output may match, and what it means."""
    name: str
    output: torch.Tensor
    message: str


def as_array(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(x).__name__}")
    return x.detach().to("cpu", torch.float64).numpy()


def expect_shape(x: Any, shape: tuple, what: str, hint: str = "") -> None:
    if not isinstance(x, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise CheckFailed(f"{what} has shape {tuple(x.shape)}, expected {tuple(shape)}."
                          + (f" {hint}" if hint else ""))


def expect_dtype(x: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    if x.dtype != dtype:
        raise CheckFailed(f"{what} has dtype {x.dtype}, expected {dtype}.")


def expect_close(actual: Any, expected: torch.Tensor, what: str, *, atol: float = 1e-5,
                 rtol: float = 1e-5, suspects: Iterable[Suspect] = (), context: str = "",
                 hint: str = "") -> None:
    """Compare with the oracle; on failure, say which known mistake the output matches."""
    expect_shape(actual, tuple(expected.shape), what)
    a, e = as_array(actual, what), as_array(expected, "reference")
    if not np.all(np.isfinite(a)):
        raise CheckFailed(f"{what} contains NaN or inf{' ' + context if context else ''}.")
    err = np.abs(a - e)
    bound = atol + rtol * np.abs(e)
    if np.all(err <= bound):
        return
    for s in suspects:
        sa = as_array(s.output, s.name)
        if sa.shape == a.shape and np.allclose(a, sa, atol=max(atol, 1e-4), rtol=1e-4):
            raise CheckFailed(f"{what} is wrong{' ' + context if context else ''}: "
                              f"{s.message}")
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    raise CheckFailed(
        f"{what} differs from the reference{' ' + context if context else ''}: "
        f"max |difference| = {err.max():.3g} at index {tuple(int(i) for i in worst)} "
        f"(yours {a[worst]:.6g}, expected {e[worst]:.6g}; tolerance {atol:g} + {rtol:g}*|expected|)."
        + (f" {hint}" if hint else ""))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
