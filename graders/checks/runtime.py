"""The untrusted half of every hidden check: what runs next to the student's code.

A hidden check is three steps (see ``common``): the trusted grader makes the inputs, the
student's code runs on them (this module's side), and the trusted grader compares the
outputs with the library oracle. When a submission is graded in the sandbox, the middle
step runs in the student's kernel, inside the sandbox, and only *plain data* crosses back:

* :func:`pack` / :func:`unpack` turn a value made of ``None``, ``bool``, ``int``, ``float``,
  ``str``, lists, tuples, dicts with string keys and dense ``torch.Tensor`` s into bytes (one
  safetensors file: the tensors, plus a JSON skeleton in its metadata) and back. Nothing
  executable ever crosses: no pickle, no classes, no functions; sizes are capped.
* :func:`call` runs one check's ``run`` function on the student's objects with the library
  oracle disabled (:func:`forbid`), silently, and turns any exception into a plain error
  record (``{"__error__": ...}``) that the trusted side words for the student.
* :class:`Recorder` is what the sandbox's kernel calls from a test cell: it reads the inputs
  the trusted grader wrote, runs, and writes the outputs for the grader to compare.

This file is self-contained (torch, numpy and safetensors only): the grading driver copies
it, with the lessons' ``run_*`` functions (``graders.checks.bundle``), into each sandbox.
Nothing here decides a grade.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

#: Largest packed value accepted in either direction (bytes).
MAX_BYTES = 64 * 2**20
MAX_NODES = 100_000
MAX_DEPTH = 32
_DTYPES = {str(d).replace("torch.", ""): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
    torch.int16, torch.int32, torch.int64, torch.bool)}


class PackError(ValueError):
    """A value that cannot cross the sandbox boundary (type, size or shape)."""


# --------------------------------------------------------------------------- plain data

def _plain(obj: Any, tensors: dict, depth: int, count: list) -> Any:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise PackError(f"the value has more than {MAX_NODES} parts")
    if depth > MAX_DEPTH:
        raise PackError(f"the value is nested more than {MAX_DEPTH} levels deep")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return {"i": str(int(obj))}
    if isinstance(obj, float):
        return {"f": repr(float(obj))}
    if isinstance(obj, torch.Tensor):
        t = torch.Tensor.as_subclass(obj, torch.Tensor) if type(obj) is not torch.Tensor else obj
        if t.layout != torch.strided:
            raise PackError("sparse tensors are not supported; return a dense tensor")
        name = str(t.dtype).replace("torch.", "")
        if name not in _DTYPES:
            raise PackError(f"tensors of dtype {t.dtype} are not supported")
        key = f"t{len(tensors)}"
        tensors[key] = t.detach().to("cpu").contiguous().clone()
        return {"t": key}
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, tensors, depth + 1, count) for v in obj]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise PackError(f"dictionary keys must be strings, got {type(k).__name__}")
            out[k] = _plain(v, tensors, depth + 1, count)
        return {"dict": out}
    try:  # numpy scalars and arrays, without importing numpy here
        import numpy as np

        if isinstance(obj, np.generic):
            return _plain(obj.item(), tensors, depth, count)
        if isinstance(obj, np.ndarray):
            return _plain(torch.from_numpy(np.ascontiguousarray(obj)), tensors, depth, count)
    except ImportError:  # pragma: no cover
        pass
    raise PackError(f"values of type {type(obj).__name__} cannot be graded; return tensors, "
                    "numbers, strings, lists, tuples or dicts of them")


def pack(obj: Any, limit: int = MAX_BYTES) -> bytes:
    """Plain data -> bytes (safetensors with a JSON skeleton). Raises :class:`PackError`."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    skeleton = _plain(obj, tensors, 0, [0])
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if size > limit:
        raise PackError(f"the value holds {size / 2**20:.1f} MiB of tensors; the limit is "
                        f"{limit / 2**20:.0f} MiB")
    if not tensors:  # safetensors needs at least one tensor to carry metadata
        tensors["_"] = torch.zeros(0)
    return save(tensors, metadata={"skeleton": json.dumps(skeleton)})


def _build(node: Any, tensors: dict, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise PackError("the value is nested too deeply")
    if node is None or isinstance(node, (bool, str)):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        raise PackError("malformed value")
    (kind, v), = node.items()
    if kind == "i":
        return int(v)
    if kind == "f":
        return float(v)
    if kind == "t":
        if v not in tensors:
            raise PackError("malformed value: missing tensor")
        return tensors[v]
    if kind in ("list", "tuple"):
        if not isinstance(v, list):
            raise PackError("malformed value")
        items = [_build(x, tensors, depth + 1) for x in v]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        if not isinstance(v, dict):
            raise PackError("malformed value")
        return {str(k): _build(x, tensors, depth + 1) for k, x in v.items()}
    raise PackError(f"malformed value: unknown node {kind!r}")


def unpack(data: bytes, limit: int = MAX_BYTES) -> Any:
    """bytes -> plain data. Safe on untrusted bytes: only tensors, numbers, strings, lists,
    tuples and dicts come out (no pickle). Raises :class:`PackError`."""
    from safetensors.torch import load

    if len(data) > limit + 2**20:
        raise PackError(f"the value is {len(data) / 2**20:.1f} MiB; the limit is {limit / 2**20:.0f} MiB")
    try:
        n = int.from_bytes(data[:8], "little")
        if not 0 < n <= min(len(data) - 8, 2**24):
            raise ValueError("bad header length")
        header = json.loads(data[8:8 + n])
        skeleton = json.loads(header["__metadata__"]["skeleton"])
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a malformed value
        raise PackError(f"malformed value ({type(exc).__name__})") from None
    for t in tensors.values():
        if str(t.dtype).replace("torch.", "") not in _DTYPES:
            raise PackError(f"tensors of dtype {t.dtype} are not supported")
    return _build(skeleton, tensors, 0)


def roundtrip(obj: Any, limit: int = MAX_BYTES) -> Any:
    """``unpack(pack(obj))``: what the trusted side would receive from the sandbox."""
    return unpack(pack(obj, limit), limit)


# --------------------------------------------------------------------------- running

def module_facts(module: Any, linears: Iterable[str] = ()) -> dict:
    """Plain facts about a student's ``nn.Module``: the classes it contains, the (in, out)
    features of the named Linear attributes (None when missing), and its state dict. Plain data
    the trusted side can compare; nothing executable."""
    facts = {}
    for name in linears:
        layer = getattr(module, name, None)
        facts[name] = ([layer.in_features, layer.out_features]
                       if isinstance(layer, torch.nn.Linear) else None)
    return {"classes": sorted({f"{type(m).__module__}.{type(m).__qualname__}" for m in module.modules()}),
            "linears": facts,
            "state": {k: v.detach().clone() for k, v in module.state_dict().items()}}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow warnings and stderr (nbgrader scores any stderr output in a test cell as 0)."""
    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        yield


class OracleCalled(AssertionError):
    """The student's code called the library function the exercise asks them to write."""


def _resolve(dotted: str) -> Any:
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


@contextlib.contextmanager
def forbid(targets: Iterable[str]) -> Iterator[None]:
    """Make the library oracle unusable while the student's code runs.

    ``targets`` are dotted paths ("torch.nn.functional.group_norm"); each is replaced at its
    home module and wherever the notebook bound it by name (``from x import f``).
    """
    patched: list[tuple[Any, str, Any]] = []
    main = sys.modules.get("__main__")
    resolved = []
    for path in targets:  # import everything first: a module imported while another target is
        module_name, _, attr = path.rpartition(".")   # trapped would keep the trap for good
        try:
            owner = _resolve(module_name)
            resolved.append((path, owner, attr, getattr(owner, attr)))
        except (ImportError, AttributeError):
            continue
    try:
        for path, owner, attr, original in resolved:
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


def error_record(exc: BaseException) -> dict:
    kind = ("not_implemented" if isinstance(exc, NotImplementedError) else
            "oracle" if isinstance(exc, OracleCalled) else "exception")
    return {"__error__": {"kind": kind, "type": type(exc).__name__, "message": str(exc)[:2000]}}


def is_error(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"__error__"}


def call(run: Callable, inputs: Any, objects: tuple, forbidden: Iterable[str] = (),
         limit: int = MAX_BYTES) -> bytes:
    """Run ``run(inputs, *objects)`` quietly with the oracle forbidden; return the packed
    outputs, or a packed error record when the student's code raised."""
    try:
        with quiet(), forbid(forbidden), torch.random.fork_rng(devices=[]):
            out = run(inputs, *objects)
        return pack(out, limit)
    except PackError as exc:
        return pack({"__error__": {"kind": "unpackable", "type": "PackError", "message": str(exc)}})
    except Exception as exc:  # noqa: BLE001 - the student's code may raise anything
        return pack(error_record(exc))


# --------------------------------------------------------------------------- sandbox side

class Recorder:
    """Called from the hidden-test lines of a submission executed in the sandbox.

    ``inbox/<module>/<check>/<seed>.st`` hold the packed inputs (written by the trusted
    grader), ``bundle/<module>.py`` the lesson's ``run_*`` functions and its table of checks;
    outputs go to ``outbox/<grade_id>/<k>/<seed>.st``. The trusted grader never reads
    anything else the kernel writes.
    """

    def __init__(self, inbox: str, bundle: str, outbox: str):
        self.inbox, self.bundle, self.outbox = Path(inbox), Path(bundle), Path(outbox)
        self._modules: dict[str, Any] = {}

    def _module(self, name: str):
        if name not in self._modules:
            import types

            src = (self.bundle / f"{name}.py").read_text()
            mod = types.ModuleType(f"_bundle_{name}")
            exec(compile(src, str(self.bundle / f"{name}.py"), "exec"), mod.__dict__)
            self._modules[name] = mod
        return self._modules[name]

    def run(self, grade_id: str, k: int, module: str, check: str, *objects) -> None:
        mod = self._module(module)
        spec = mod.RUN_TABLE[check]
        run = getattr(mod, spec["run"])
        folder = self.outbox / grade_id / str(int(k))
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted((self.inbox / module / check).glob("*.st"), key=lambda p: int(p.stem)):
            inputs = unpack(path.read_bytes())
            (folder / path.name).write_bytes(call(run, inputs, objects, spec["forbid"]))
        print(f"hidden test {check}: ran")
