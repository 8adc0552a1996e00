"""Load CLIP, SD's VAE and a text-to-image pipeline: the real ones or the tiny offline ones.

Every loader takes ``tier``:

* ``"full"``: the real weights from the Hugging Face hub (open_clip ViT-B-32 trained on
  LAION-2B; the SD 1.x VAE, scaling factor 0.18215; the SD 1.x pipeline). Needs internet or
  a filled cache; a GPU is recommended for the pipeline.
* ``"tiny"``: small models trained by this project on shapes world and bundled photos,
  shipped in ``data/models/`` and loaded by *the same library calls* from local folders.
  Rebuild them with ``make tiny-models``.
* ``"auto"`` (default): decided ONCE per Python session for every model, so a lesson never
  mixes a full VAE with a tiny pipeline: ``full`` when every full-tier model (CLIP and the
  SD 1.x pipeline, which holds the VAE) is already in the local hub cache (read from the
  cache, never by probing the network), else ``tiny``. ``$SDCOURSE_TIER`` (``tiny`` /
  ``full`` / ``auto``) overrides ``"auto"``; an explicit ``"tiny"`` or ``"full"`` argument
  always wins.

Each loader prints one line saying which tier it uses and how to switch, keeps stderr quiet
(no progress bars, no warnings), and marks what it returns with its tier:
:func:`tier_of` (``"tiny"`` or ``"full"``), so a notebook never resolves the tier twice.

``$SDCOURSE_MODELS_DIR`` replaces ``<repo>/data/models`` as the home of the tiny models.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sdcourse.device import get_device

__all__ = ["load_clip", "load_vae", "load_pipeline", "tier_of", "resolve_tier", "session_tier",
           "models_dir", "TIERS", "FULL_CLIP", "FULL_SD", "ModelFilesError"]

TIERS = ("auto", "tiny", "full")
#: open_clip (model name, pretrained tag) of the full-tier CLIP.
FULL_CLIP = ("ViT-B-32", "laion2b_s34b_b79k")
#: Hub id of the full-tier SD 1.x pipeline (its ``vae`` subfolder is the full-tier VAE).
FULL_SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
TINY_CLIP = "tiny-clip"
TINY_SD = "tiny-sd"
REBUILD = "make tiny-models  (python -m sdcourse.tiny.build_all)"
TIER_ATTR = "sdcourse_tier"


class ModelFilesError(FileNotFoundError):
    """A tiny model's folder is missing a file or holds a corrupted one."""


def models_dir() -> Path:
    """Folder of the tiny models: ``$SDCOURSE_MODELS_DIR`` or ``<repo>/data/models``."""
    env = os.environ.get("SDCOURSE_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data" / "models"


def tier_of(obj: Any) -> str:
    """``"tiny"`` or ``"full"``: the tier a loader of this module returned ``obj`` from (a
    CLIP model, a VAE or a pipeline). Raises ``ValueError`` for anything else."""
    tier = getattr(obj, TIER_ATTR, None)
    if tier not in ("tiny", "full"):
        raise ValueError(f"{type(obj).__name__} was not loaded by sdcourse.models, so its tier is unknown")
    return tier


# ------------------------------------------------------------------ quiet libraries
def _quiet() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:  # pragma: no cover
        pass


# ------------------------------------------------------------------ hub-cache checks (no network)
def _cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        p = try_to_load_from_cache(repo, filename)
    except Exception:
        return None
    return p if isinstance(p, str) and os.path.isfile(p) else None


def _full_clip_checkpoint() -> str | None:
    """Local path of the full CLIP checkpoint if it is in the hub cache, else None."""
    try:
        import open_clip

        repo = open_clip.get_pretrained_cfg(*FULL_CLIP).get("hf_hub", "").strip("/")
    except Exception:
        return None
    if not repo:
        return None
    for fn in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.safetensors"):
        p = _cached(repo, fn)
        if p:
            return p
    return None


def _full_sd_cached(parts=("vae", "unet", "text_encoder")) -> bool:
    need = ["model_index.json"] if len(parts) > 1 else []
    need += [f"{part}/config.json" for part in parts]
    if not all(_cached(FULL_SD, f) for f in need):
        return False
    for part in parts:
        names = (["model.safetensors", "pytorch_model.bin"] if part == "text_encoder"
                 else ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"])
        if not any(_cached(FULL_SD, f"{part}/{n}") for n in names):
            return False
    if len(parts) > 1 and not all(_cached(FULL_SD, f"tokenizer/{f}") for f in ("vocab.json", "merges.txt")):
        return False
    return True


# ------------------------------------------------------------------ tier resolution
_SESSION: dict[str, str] = {}


def _env_tier() -> str:
    env = os.environ.get("SDCOURSE_TIER", "").strip().lower()
    if env and env not in TIERS:
        raise ValueError(f"SDCOURSE_TIER={env!r} is not a valid tier; use one of: {', '.join(TIERS)}")
    return env


def session_tier() -> str:
    """The tier ``"auto"`` means in this Python session, decided on first use and kept:
    ``full`` only when every full-tier model is in the local cache."""
    if "auto" not in _SESSION:
        _SESSION["auto"] = "full" if (_full_clip_checkpoint() and _full_sd_cached()) else "tiny"
    return _SESSION["auto"]


def resolve_tier(tier: str = "auto") -> str:
    """``"tiny"`` or ``"full"`` for a requested tier; raises ``ValueError`` for an unknown one."""
    env = _env_tier()
    if not isinstance(tier, str) or tier.lower() not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; valid tiers are: {', '.join(TIERS)}")
    tier = tier.lower()
    if tier == "auto" and env:
        tier = env
    return session_tier() if tier == "auto" else tier


# ------------------------------------------------------------------ tiny-folder checks
def _check_folder(folder: Path, files, name: str) -> Path:
    """Raise ModelFilesError naming the first missing / unreadable file of a tiny model."""
    for f in files:
        p = folder / f
        if not p.is_file():
            raise ModelFilesError(
                f"the tiny {name} is incomplete: {p} is missing. Rebuild the tiny models with `{REBUILD}` "
                f"(or point $SDCOURSE_MODELS_DIR at a folder that has them).")
        try:
            if p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(p), framework="pt") as fh:
                    if not list(fh.keys()):
                        raise ValueError("no tensors in file")
            elif p.stat().st_size == 0:
                raise ValueError("empty file")
        except Exception as e:  # noqa: BLE001 - any parse error means a corrupted file
            raise ModelFilesError(
                f"the tiny {name} has a corrupted file: {p} ({type(e).__name__}: {e}). "
                f"Rebuild the tiny models with `{REBUILD}`.") from e
    return folder


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _full_failed(what: str, err: Exception) -> RuntimeError:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    why = ("HF_HUB_OFFLINE is set and the files are not in the local cache" if offline
           else "the hub could not be reached and the files are not in the local cache")
    return RuntimeError(
        f"could not load the full-tier {what}: {why} ({type(err).__name__}: {str(err).splitlines()[0][:300]}). "
        f"Use tier='tiny' (or set SDCOURSE_TIER=tiny) for the offline models, or fill the cache on a "
        f"machine with internet.")


# ------------------------------------------------------------------ the library calls (both tiers)
def _clip_from(name: str, pretrained: str | None, device):
    """``open_clip.create_model_and_transforms`` + ``get_tokenizer``: (model, preprocess, tokenizer)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def _vae_from(source: str, subfolder: str | None, device, local_files_only: bool):
    """``AutoencoderKL.from_pretrained(source, subfolder=...)``."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(source, subfolder=subfolder, local_files_only=local_files_only)
    return vae.to(device).eval()


def _pipeline_from(source: str, device, local_files_only: bool, dtype=torch.float32):
    """``StableDiffusionPipeline.from_pretrained(source, ...)``, safety checker off."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        source, safety_checker=None, requires_safety_checker=False, feature_extractor=None,
        dtype=dtype, local_files_only=local_files_only)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class _Spec:
    name: str                                   # "CLIP", "VAE", "text-to-image pipeline"
    tiny_folder: tuple[str, ...]                # under models_dir()
    tiny_files: tuple[str, ...]
    tiny: Callable[[Path, torch.device], Any]
    full: Callable[[torch.device], Any]
    full_what: str                              # what the full tier is, in words
    tiny_note: Callable[[Any], str] = lambda obj: ""


def _tiny_clip(folder: Path, device):
    return _clip_from("local-dir:" + str(folder), None, device)


def _full_clip(device):
    # cached: load the cached file directly (no network); else the hub tag (downloads)
    return _clip_from(FULL_CLIP[0], _full_clip_checkpoint() or FULL_CLIP[1], device)


def _full_pipeline(device):
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return _pipeline_from(FULL_SD, device, local_files_only=_full_sd_cached(), dtype=dtype)


_SPECS = {
    "clip": _Spec("CLIP", (TINY_CLIP,), ("open_clip_config.json", "open_clip_model.safetensors"),
                  _tiny_clip, _full_clip, f"open_clip {FULL_CLIP[0]} ({FULL_CLIP[1]})"),
    "vae": _Spec("VAE", (TINY_SD, "vae"), ("config.json", "diffusion_pytorch_model.safetensors"),
                 lambda folder, device: _vae_from(str(folder.parent), "vae", device, local_files_only=True),
                 lambda device: _vae_from(FULL_SD, "vae", device, local_files_only=_full_sd_cached(("vae",))),
                 f"the SD 1.x VAE ({FULL_SD}, subfolder 'vae')",
                 tiny_note=lambda vae: f", scaling_factor {vae.config.scaling_factor}"),
    "pipeline": _Spec("text-to-image pipeline", (TINY_SD,), (
        "model_index.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors"),
        lambda folder, device: _pipeline_from(str(folder), device, local_files_only=True),
        _full_pipeline, f"the SD 1.x pipeline ({FULL_SD}; GPU recommended)"),
}


def _mark(obj: Any, tier: str) -> None:
    setattr(obj[0] if isinstance(obj, tuple) else obj, TIER_ATTR, tier)


def _load(kind: str, tier: str, device):
    spec = _SPECS[kind]
    _quiet()
    tier = resolve_tier(tier)
    device = torch.device(device) if device is not None else get_device()
    if tier == "tiny":
        folder = _check_folder(models_dir().joinpath(*spec.tiny_folder), spec.tiny_files, spec.name)
        try:
            obj = spec.tiny(folder, device)
        except Exception as e:  # noqa: BLE001
            raise ModelFilesError(f"the tiny {spec.name} in {folder} could not be loaded "
                                  f"({type(e).__name__}: {e}); rebuild it with `{REBUILD}`.") from e
        note = spec.tiny_note(obj[0] if isinstance(obj, tuple) else obj)
        print(f"sdcourse: using the tiny {spec.name} ({_rel(folder)}{note}); set SDCOURSE_TIER=full "
              f"for {spec.full_what}", flush=True)
    else:
        try:
            obj = spec.full(device)
        except Exception as e:  # noqa: BLE001
            raise _full_failed(f"{spec.name} ({spec.full_what})", e) from e
        print(f"sdcourse: using the full {spec.name} ({spec.full_what}); set SDCOURSE_TIER=tiny for "
              f"the small offline model", flush=True)
    _mark(obj, tier)
    return obj


# ------------------------------------------------------------------ public loaders
def load_clip(tier: str = "auto", device=None):
    """Load a CLIP model with open_clip.

    Returns ``(model, preprocess, tokenizer)``: ``model`` in eval mode on ``device`` (default
    ``get_device()``); ``preprocess`` maps a PIL image to a (3, S, S) float tensor (S = 224
    for ``full``; see the tiny model card); ``tokenizer(list_of_str)`` returns a
    (N, context_length) int64 tensor (77 for ``full``, 24 for ``tiny``). ``model.encode_image``
    / ``model.encode_text`` give (N, D) embeddings (D = 512 full, 64 tiny). ``tier_of(model)``
    says which tier it is.

    Raises ``ValueError`` for an unknown tier, ``ModelFilesError`` for a missing or corrupted
    tiny model, ``RuntimeError`` when the full model cannot be loaded.
    """
    return _load("clip", tier, device)


def load_vae(tier: str = "auto", device=None):
    """Load SD's VAE (``diffusers.AutoencoderKL``; 8x downsampling, 4 latent channels).

    ``vae.encode(x).latent_dist`` maps (N, 3, H, W) images in [-1, 1] to a distribution over
    (N, 4, H/8, W/8) latents; ``vae.decode(z).sample`` maps back. Multiply latents by
    ``vae.config.scaling_factor`` (0.18215 full; see the tiny card) before diffusion.

    Raises ``ValueError`` (unknown tier), ``ModelFilesError`` (tiny files missing or
    corrupted) or ``RuntimeError`` (full model unavailable).
    """
    return _load("vae", tier, device)


def load_pipeline(tier: str = "auto", device=None):
    """Load a text-to-image ``diffusers.StableDiffusionPipeline`` (safety checker off).

    ``pipe(prompt, num_inference_steps=25, guidance_scale=7.5, generator=g).images`` returns
    PIL images: 64x64 from 4x8x8 latents for ``tiny``, 512x512 from 4x64x64 for ``full``.
    Prompts longer than the tokenizer's limit (``pipe.tokenizer.model_max_length``: 24 tokens
    tiny, 77 full) are truncated. Progress bars are disabled
    (``pipe.set_progress_bar_config(disable=False)`` turns them on).

    Raises ``ValueError`` (unknown tier), ``ModelFilesError`` (tiny files missing or
    corrupted) or ``RuntimeError`` (full model unavailable).
    """
    return _load("pipeline", tier, device)
