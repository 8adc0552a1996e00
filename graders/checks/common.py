"""The trusted half of every hidden check (instructor-only; never shipped to students).

A hidden check is three steps, and only the middle one touches the student's code:

    inputs  = make_inputs(seed)         # trusted: fresh, seeded plain data (odd sizes, batch 1, ...)
    outputs = run(inputs, *student)     # untrusted: calls the student's code; plain data out
    compare(inputs, outputs)            # trusted: the oracle + a diagnosis naming the misconception

A lesson's checks module declares its checks in one table, ``CHECKS = Checks(Check(...), ...)``,
and its hidden test lines call ``hidden.check("<name>", <student objects>)``. Run functions
are top-level ``run_*`` functions: ``graders.checks.bundle`` cuts them out of the module so the
grading sandbox can run them next to the student's code (see ``runtime``), and the same bundle
runs here in-process (nbval, the quick tests), so both paths execute the same code.

Inputs and outputs are plain data (tensors, numbers, strings, lists, tuples, dicts): in the
sandbox they cross a process boundary as bytes (``runtime.pack``); in-process they make the
same round trip, so a run function that returns a module or a closure fails everywhere.
Every failure is a :class:`CheckFailed` written for the student; nothing reaches stderr.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import runtime
from .runtime import OracleCalled, forbid, quiet, seeded  # noqa: F401  (re-exported)


class CheckFailed(AssertionError):
    """A hidden check failed; the message is meant for the student."""


# --------------------------------------------------------------------------- checks

@dataclass(frozen=True)
class Check:
    """One hidden check: ``make_inputs(seed)``, ``run(inputs, *student_objects)`` (a top-level
    ``run_*`` function: it runs in the sandbox), ``compare(inputs, outputs)``, the seeds, and
    the dotted names of library oracles the student's code may not call."""
    name: str
    make_inputs: Callable[[int], Any]
    run: Callable[..., Any]
    compare: Callable[[Any, Any], None]
    seeds: tuple[int, ...]
    forbid: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "forbid", tuple(self.forbid))


class Checks:
    """A lesson's table of checks; calling it runs one check in-process."""

    def __init__(self, *checks: Check, module: str = ""):
        self.checks = tuple(checks)
        self.module = module.rpartition(".")[2]
        names = [c.name for c in checks]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate check names: {sorted(dupes)}")
        self._by_name = {c.name: c for c in checks}

    def __getitem__(self, name: str) -> Check:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.module} has no check {name!r}; it has {sorted(self._by_name)}") from None

    def names(self) -> list[str]:
        return list(self._by_name)

    # --- trusted side, used by both paths
    def inputs(self, name: str) -> dict[int, bytes]:
        """Packed inputs of check ``name``, one per seed (what the sandbox receives)."""
        check = self[name]
        return {seed: runtime.pack(check.make_inputs(seed)) for seed in check.seeds}

    def judge(self, name: str, outputs: dict[int, bytes | None]) -> None:
        """Compare packed outputs (seed -> bytes, or None when the run never happened) with
        the oracle; raise :class:`CheckFailed` naming the first problem."""
        check = self[name]
        with quiet():
            for seed in check.seeds:
                data = outputs.get(seed)
                if data is None:
                    raise CheckFailed("the hidden test did not run: the cell stopped before it "
                                      "(an error above, or the kernel was interrupted)")
                inputs = check.make_inputs(seed)
                try:
                    out = runtime.unpack(data)
                except runtime.PackError as exc:
                    raise CheckFailed(f"your code returned something the grader cannot read ({exc})") from None
                if runtime.is_error(out):
                    raise CheckFailed(_error_message(out["__error__"], inputs))
                check.compare(inputs, out)

    # --- in-process path: what a hidden test line calls
    def __call__(self, name: str, *objects: Any) -> None:
        from . import bundle

        check = self[name]
        run = getattr(bundle.load(self.module), check.run.__name__)
        outputs = {}
        for seed, packed in self.inputs(name).items():
            outputs[seed] = runtime.call(run, runtime.unpack(packed), objects, check.forbid)
        self.judge(name, outputs)


def _error_message(err: dict, inputs: Any) -> str:
    kind, typ, msg = err.get("kind"), err.get("type", "Exception"), err.get("message", "")
    if kind == "not_implemented":
        return "not implemented yet: the solution cell still raises NotImplementedError"
    if kind == "oracle":
        return msg
    if kind == "unpackable":
        return f"your code returned something the grader cannot read: {msg}"
    return f"your code raised {typ}: {msg}\non a fresh input: {describe(inputs)}"


def describe(inputs: Any) -> str:
    """Short human description of an input dict: shapes and dtypes, not values."""
    if isinstance(inputs, dict):
        return ", ".join(f"{k}={describe(v)}" for k, v in inputs.items()
                         if not k.startswith("_"))
    if isinstance(inputs, torch.Tensor):
        return f"tensor{tuple(inputs.shape)} {str(inputs.dtype).replace('torch.', '')}"
    if isinstance(inputs, (list, tuple)) and len(inputs) > 6:
        return f"{type(inputs).__name__} of {len(inputs)}"
    return repr(inputs)


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

