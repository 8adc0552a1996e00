"""Shared helpers for the tiny-model trainers: paths, seeds, photo crops, PSNR, JSON.

Instructor build tooling (``make tiny-models``); notebooks never import this module."""
from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
REBUILD_CMD = "make tiny-models  (= python -m sdcourse.tiny.build_all)"

#: The photos every phase of the VAE trains on (``PHASE3_PHOTOS`` adds two for phase 3): all
#: bundled with scikit-image (files inside the installed package, ``skimage/data/``; nothing is
#: fetched), with the licence its ``skimage.data`` docstring states. matplotlib's sample photos
#: (``grace_hopper.jpg``, ``Minduka_Present_Blue_Pack.png``) are reserved for evaluation and must
#: never appear here.
PHOTOS: dict[str, str] = {
    "astronaut": "public domain (NASA Great Images database)",
    "coffee": "CC0 (photographer Rachel Michetti)",
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "rocket": "public domain (SpaceX photos)",
    "camera": "CC0 (photographer Lav Varshney); greyscale, repeated to 3 channels",
    "hubble_deep_field": "public domain (NASA / HubbleSite)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
    "retina": "CC0 1.0 (Mikael Haggstrom, Wikimedia)",
    "coins": "no known copyright restrictions (Brooklyn Museum); greyscale",
    "grass": "CC0 (DeviantArt linolafett); greyscale",
    "gravel": "CC0 (CC0Textures); greyscale",
    "brick": "CC0 (CC0Textures); greyscale",
}
#: Colour photos bundled with scikit-image that only the VAE's phase 3 (``train_vae.finetune_photos``)
#: trains on (its training part, as for ``PHOTOS``); phases 1-2 keep ``PHOTOS`` alone, so that
#: their weights reproduce. The tiny CLIP also uses them (as textured backgrounds).
PHASE3_PHOTOS: dict[str, str] = {
    "motorcycle_left": "Middlebury 2014 stereo benchmark (Scharstein et al.), redistributed by scikit-image "
                       "(`stereo_motorcycle`); no licence stated in the docstring, used for research/teaching "
                       "with the citation given there",
    "motorcycle_right": "as motorcycle_left (the right image of the same stereo pair)",
}
#: More images bundled with scikit-image that only the tiny CLIP uses (blurred, desaturated, as the
#: textured backgrounds of its augmented training renders; ``train_clip.BACKGROUND_PHOTOS``).
BACKGROUND_ONLY_PHOTOS: dict[str, str] = {
    "colorwheel": "scikit-image's own test image (no separate licence stated: scikit-image's BSD-3-Clause)",
    "logo": "the scikit-image logo (no separate licence stated: scikit-image's BSD-3-Clause); RGBA, composited on white",
}
#: matplotlib's bundled sample photos, reserved for evaluating the VAE (never trained on).
RESERVED_PHOTOS: tuple[str, ...] = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
#: Fraction of each photo's width (the right-hand strip) held out for evaluation.
HELDOUT_FRACTION = 0.25


def models_dir() -> Path:
    """``$SDCOURSE_MODELS_DIR`` if set, else ``<repo>/data/models``."""
    env = os.environ.get("SDCOURSE_MODELS_DIR")
    return Path(env) if env else REPO_ROOT / "data" / "models"


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n: int = 2) -> None:
    torch.set_num_threads(min(n, os.cpu_count() or 1))


def quiet_libraries() -> None:
    """Silence diffusers / transformers progress bars and warnings."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass


_PHOTO_CACHE: dict[str, np.ndarray] = {}


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 array of a bundled scikit-image photo (a name in ``PHOTOS``,
    ``PHASE3_PHOTOS`` or ``BACKGROUND_ONLY_PHOTOS``)."""
    if name not in _PHOTO_CACHE:
        import skimage.data

        if name.startswith("motorcycle_"):
            arr = skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1]
        else:
            arr = np.asarray(getattr(skimage.data, name)())
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.shape[2] == 4:  # RGBA: composite on white
            a = arr[..., 3:].astype(np.float32) / 255
            arr = (arr[..., :3] * a + 255 * (1 - a)).round()
        _PHOTO_CACHE[name] = np.ascontiguousarray(arr[..., :3]).astype(np.uint8)
    return _PHOTO_CACHE[name]


def reserved_photo(name: str, size: int) -> np.ndarray:
    """(size, size, 3) uint8: one of matplotlib's sample photos (``RESERVED_PHOTOS``), RGBA
    composited on white, resized (bicubic) to a square. For evaluation only."""
    import matplotlib.cbook
    from PIL import Image

    if name not in RESERVED_PHOTOS:
        raise ValueError(f"{name!r} is not a reserved evaluation photo ({', '.join(RESERVED_PHOTOS)})")
    im = Image.open(matplotlib.cbook.get_sample_data(name, asfileobj=False))
    if im.mode == "RGBA":
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))


def _photo_region(name: str, split: str, scale: float) -> np.ndarray:
    from PIL import Image

    arr = load_photo(name)
    if scale != 1.0:
        h, w = arr.shape[:2]
        arr = np.asarray(Image.fromarray(arr).resize((int(w * scale), int(h * scale)), Image.BILINEAR))
    cut = int(arr.shape[1] * (1 - HELDOUT_FRACTION))
    return arr[:, :cut] if split == "train" else arr[:, cut:]


def photo_crops(n: int, size: int, split: str, seed: int, scales=(1.0, 0.5)) -> np.ndarray:
    """``n`` random ``size`` x ``size`` RGB crops, (n, size, size, 3) uint8.

    ``split="train"`` crops the left 75% of every photo in ``PHOTOS``; ``"heldout"`` the
    right-hand 25% strip, which no trainer ever sees. ``scales`` are resize factors applied
    to the photo before cropping (0.5 = more detail per crop); a region narrower than
    ``size`` (a held-out strip of a small photo at scale 0.5) is skipped.
    """
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 7])
    regions = [_photo_region(p, split, s) for p in PHOTOS for s in scales]
    regions = [r for r in regions if r.shape[0] >= size and r.shape[1] >= size]  # narrow strips
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        reg = regions[rng.integers(len(regions))]
        h, w = reg.shape[:2]
        y = rng.integers(0, h - size + 1)
        x = rng.integers(0, w - size + 1)
        crop = reg[y:y + size, x:x + size]
        if split == "train" and rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[k] = crop
    return out


def to_model_range(u8: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float tensor in [-1, 1]."""
    return torch.from_numpy(np.array(u8, copy=True)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], shape (N, 3, H, W) -> (N,)."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def cpu_s(children: bool = False) -> float:
    """CPU seconds (user + system) used so far by this process, or by its finished children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return round(r.ru_utime + r.ru_stime, 1)


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of this process since it started its program. On Linux this
    is ``VmHWM``: ``ru_maxrss`` survives exec, so in a process started by ``subprocess`` (or a
    Jupyter kernel) it would report the parent's size if that was larger (a 1.5 GB parent gave
    a bare ``python -c`` child 1526 MB)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warmup_cosine(opt: torch.optim.Optimizer, steps: int, warmup_cap: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The trainers' learning-rate schedule: linear warm-up over ``steps // 10`` steps (at
    most ``warmup_cap``, at least 1), then a cosine decay to 0 at ``steps``."""
    warm = max(1, min(warmup_cap, steps // 10))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def readable_by_all(folder: Path) -> None:
    """Give everyone read access to the files under ``folder`` (and entry to its folders).
    diffusers and transformers save weights through a temporary file of mode 0600, and the
    grading sandbox runs the lessons as another user, which must read the tiny models."""
    folder = Path(folder)
    for p in (folder, *folder.rglob("*")):
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | (0o555 if p.is_dir() else 0o444))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def rel(path: Path) -> str:
    """``path`` relative to the repository root when inside it (for cards and stats)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20
