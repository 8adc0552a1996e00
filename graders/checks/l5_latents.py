"""Hidden checks for 6-3-5 "From pixels to latents" (instructor-only).

Oracles (built here, on the trusted side, never taken from the student's kernel):

* ex1 ``encode_image`` / ``decode_latents``: diffusers' own path, ``VaeImageProcessor.preprocess``
  -> ``vae.encode(x).latent_dist.sample(generator)`` (or ``.mode()`` without a generator) ->
  ``* vae.config.scaling_factor`` (img2img's ``retrieve_latents`` path), and the pipeline's decode
  path ``vae.decode(latents / scaling_factor)`` -> ``VaeImageProcessor.postprocess(output_type="pt")``;
  on the tiny VAE and on a randomly initialised ``AutoencoderKL`` with SD 1.x's block structure
  and narrow channels (``sdcourse.l5_latents.SD_SHAPED_VAE_CONFIG``, scaling_factor 0.18215),
  both loaded / built here from the same files / seed as the run side.
* ex2 ``estimate_scaling_factor``: 1 / std of the posterior means (preprocess + encode) of the
  same images, flattened.
* ex3 ``compression_ratio``: the arithmetic (C H W) / (C_lat (H/f) (W/f)).
* ex4 ``trace_pipeline``: shapes derived from the tiny pipeline's configuration files (tokenizer
  length, text encoder width, U-Net channels, VAE scale factor) for the prompts, sizes, step
  counts and guidance scales given, plus proof of a real run (the U-Net was called).
* ex5 ``latent_diffusion_loss``: the same computation with the same generator (posterior sample,
  then timesteps, then noise) on the tiny VAE and U-Net with a ``DDPMScheduler``; and whether a
  gradient reached the VAE (it must not) and the U-Net (it must).

Run functions load the TINY models themselves (``RUN_CACHE``), whatever tier the notebook uses,
and put their stored weights back before every use. Where a later exercise may call an earlier
one's function (``encode_image`` / ``decode_latents``), the run function swaps in the reference
for the duration of the call, so a mistake in Exercise 1 costs Exercise 1's points only.
"""
from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

import sdcourse.models
from sdcourse import l5_latents

from .common import Check, CheckFailed, Checks, Suspect, expect_close, expect_shape, seeded

# Order matters: the pipeline modules are imported (when `forbid` resolves them) BEFORE
# VaeImageProcessor is trapped, so that they keep the real class for later pipeline loads.
ENCODE_ORACLES = ["diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img.retrieve_latents",
                  "diffusers.image_processor.VaeImageProcessor", "diffusers.VaeImageProcessor"]
DECODE_ORACLES = ["diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.decode_latents",
                  "diffusers.image_processor.VaeImageProcessor", "diffusers.VaeImageProcessor"]


# =========================================================================== run side (sandbox)

RUN_CACHE: dict = {}


def _run_model(kind: str):
    """The tiny VAE ("vae"), the tiny pipeline ("pipe") or a random SD-shaped VAE ("sd:<seed>"),
    on the CPU, loaded once per kernel and reset to its stored weights before every use."""
    if kind not in RUN_CACHE:
        if kind == "vae":
            model = sdcourse.models.load_vae("tiny", device="cpu")
            modules = [model]
        elif kind == "pipe":
            model = sdcourse.models.load_pipeline("tiny", device="cpu")
            modules = [model.vae, model.unet, model.text_encoder]
        else:
            model = l5_latents.sd_shaped_vae(int(kind.split(":")[1]))
            modules = [model]
        RUN_CACHE[kind] = (model, [(m, {k: v.clone() for k, v in m.state_dict().items()}) for m in modules])
    model, states = RUN_CACHE[kind]
    for module, state in states:
        module.load_state_dict(state)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(True)
            p.grad = None
    return model


def _run_ref_encode_image(vae, images, generator=None):
    x = (2 * images - 1).to(device=vae.device, dtype=vae.dtype)
    posterior = vae.encode(x).latent_dist
    z = posterior.sample(generator) if generator is not None else posterior.mean
    return z * vae.config.scaling_factor


def _run_ref_decode_latents(vae, latents):
    x = vae.decode(latents.to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor).sample
    return (x / 2 + 0.5).clamp(0, 1)


RUN_REFERENCES = {"encode_image": "_run_ref_encode_image", "decode_latents": "_run_ref_decode_latents"}


def _run_with_references(fn, call):
    """``call()`` with the notebook's ``encode_image`` / ``decode_latents`` (the globals of the
    student's function, i.e. the notebook's ``__main__``) replaced by the references, then put back."""
    space = getattr(fn, "__globals__", None)
    saved = {}
    if isinstance(space, dict):
        for name, ref in RUN_REFERENCES.items():
            if name in space:
                saved[name] = space[name]
                space[name] = globals()[ref]
    try:
        return call()
    finally:
        if isinstance(space, dict):
            space.update(saved)


def run_encode(inputs: dict, encode_image):
    vae = _run_model(inputs["vae"])
    torch.manual_seed(inputs["global_seed"])      # so that a sample() without the generator is recognisable
    with torch.no_grad():
        if inputs["gen_seed"] is None:
            return encode_image(vae, inputs["images"].clone())
        return encode_image(vae, inputs["images"].clone(), generator=seeded(inputs["gen_seed"]))


def run_decode(inputs: dict, decode_latents):
    vae = _run_model(inputs["vae"])
    with torch.no_grad():
        return decode_latents(vae, inputs["latents"].clone())


def _run_bad(fn, vae, value) -> dict:
    try:
        with torch.no_grad():
            fn(vae, value)
    except Exception as exc:  # noqa: BLE001 - the kind of error is what we report
        return {"raised": True, "type": type(exc).__name__, "message": str(exc)[:500]}
    return {"raised": False, "type": "", "message": ""}


def run_bad_images(inputs: dict, encode_image):
    vae = _run_model("vae")
    return {case: _run_bad(encode_image, vae, value) for case, value in inputs["cases"].items()}


def run_bad_latents(inputs: dict, decode_latents):
    vae = _run_model("vae")
    return {case: _run_bad(decode_latents, vae, value) for case, value in inputs["cases"].items()}


def run_estimate(inputs: dict, estimate_scaling_factor):
    vae = _run_model(inputs["vae"])
    torch.manual_seed(inputs["global_seed"])
    with torch.no_grad():
        out = _run_with_references(estimate_scaling_factor,
                                   lambda: estimate_scaling_factor(vae, inputs["images"].clone()))
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return {"value": float(out.detach().reshape(())), "type": "tensor"}
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return {"value": float(out), "type": type(out).__name__}
    return {"value": None, "type": type(out).__name__}


def run_ratio(inputs: dict, compression_ratio):
    out = []
    for case in inputs["cases"]:
        value = compression_ratio(*case["args"], **case["kwargs"])
        out.append({"value": float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
                    "type": type(value).__name__})
    return out


def run_ratio_bad(inputs: dict, compression_ratio):
    out = []
    for case in inputs["cases"]:
        try:
            compression_ratio(*case["args"], **case["kwargs"])
            out.append({"raised": False, "type": "", "message": ""})
        except Exception as exc:  # noqa: BLE001
            out.append({"raised": True, "type": type(exc).__name__, "message": str(exc)[:500]})
    return out


def run_trace(inputs: dict, trace_pipeline):
    pipe = _run_model("pipe")
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        prompt = inputs["prompt"] if isinstance(inputs["prompt"], str) else list(inputs["prompt"])
        trace = trace_pipeline(pipe, prompt, num_inference_steps=inputs["steps"],
                               guidance_scale=inputs["guidance_scale"], height=inputs["height"],
                               width=inputs["width"], generator=seeded(inputs["seed"]))
    finally:
        handle.remove()
    entries = []
    for key, value in (trace.items() if isinstance(trace, dict) else []):
        is_ints = isinstance(value, (tuple, list)) and all(
            isinstance(d, int) and not isinstance(d, bool) for d in value)
        entries.append({"key": str(key), "tuple": isinstance(value, tuple),
                        "shape": [int(d) for d in value] if is_ints else None,
                        "type": type(value).__name__})
    return {"is_dict": isinstance(trace, dict), "type": type(trace).__name__, "entries": entries,
            "unet_calls": len(calls)}


def run_loss(inputs: dict, latent_diffusion_loss):
    pipe = _run_model("pipe")
    vae = _run_model("vae")
    unet, scheduler = pipe.unet, pipe.scheduler      # DDIM's add_noise = DDPM's (same alphas_cumprod)
    loss = _run_with_references(latent_diffusion_loss, lambda: latent_diffusion_loss(
        vae, unet, scheduler, inputs["images"].clone(), inputs["text_embeddings"].clone(),
        seeded(inputs["seed"])))
    if not isinstance(loss, torch.Tensor):
        return {"loss": None, "type": type(loss).__name__}
    out = {"loss": loss.detach().float().clone(), "type": "tensor", "requires_grad": bool(loss.requires_grad)}
    if loss.requires_grad and loss.numel() == 1:
        loss.backward()
    out["vae_grad"] = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in vae.parameters())
    out["unet_grad"] = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in unet.parameters())
    for p in list(vae.parameters()) + list(unet.parameters()):
        p.grad = None
    return out


# =========================================================================== trusted side

_ORACLE: dict = {}


def _tiny_folder():
    return sdcourse.models.models_dir() / "tiny-sd"


def _oracle_vae(kind: str):
    """The trusted side's own copy of the VAE the run side used."""
    if kind not in _ORACLE:
        from diffusers import AutoencoderKL

        if kind == "vae":
            vae = AutoencoderKL.from_pretrained(str(_tiny_folder()), subfolder="vae", local_files_only=True)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(kind.split(":")[1]))
                vae = AutoencoderKL(**dict(l5_latents.SD_SHAPED_VAE_CONFIG))
        _ORACLE[kind] = vae.eval()
    return _ORACLE[kind]


def _oracle_unet():
    if "unet" not in _ORACLE:
        from diffusers import DDPMScheduler, UNet2DConditionModel

        _ORACLE["unet"] = UNet2DConditionModel.from_pretrained(str(_tiny_folder()), subfolder="unet",
                                                               local_files_only=True).eval()
        cfg = json.loads((_tiny_folder() / "scheduler" / "scheduler_config.json").read_text())
        _ORACLE["scheduler"] = DDPMScheduler.from_config(cfg)
    return _ORACLE["unet"], _ORACLE["scheduler"]


def _close(actual, expected: torch.Tensor, atol: float, rtol: float) -> bool:
    """True when ``actual`` matches ``expected`` within tolerance (then the known-wrong answers,
    which cost oracle runs, need not be computed)."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(expected.shape):
        return False
    a, e = actual.detach().double(), expected.detach().double()
    return bool(torch.isfinite(a).all() and ((a - e).abs() <= atol + rtol * e.abs()).all())


def _processor(vae):
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor(vae_scale_factor=l5_latents.downsample_factor(vae))


def _posterior(vae, images, normalise: bool = True):
    x = _processor(vae).preprocess(images) if normalise else images
    return vae.encode(x).latent_dist


def _smooth_images(g, b: int, h: int, w: int) -> torch.Tensor:
    """Random images in [0, 1] with some structure: coarse colour fields plus fine noise."""
    coarse = torch.rand(b, 3, max(h // 8, 1), max(w // 8, 1), generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (0.85 * x + 0.15 * torch.rand(b, 3, h, w, generator=g)).clamp(0, 1)


def _images(seed: int, b: int, h: int, w: int) -> torch.Tensor:
    """Fresh images: held-out shapes scenes (cropped) and random colour fields, mixed."""
    g = seeded(seed)
    scenes = l5_latents.shapes_scenes(b, size=max(h, w), split="heldout", seed=1000 + seed)[:, :, :h, :w]
    fields = _smooth_images(g, b, h, w)
    pick = (torch.rand(b, generator=g) < 0.5).float()[:, None, None, None]
    return (pick * scenes + (1 - pick) * fields).contiguous()


# --------------------------------------------------------------------- ex1a encode_image

ENCODE_CASES = [  # (vae, batch, height, width, generator seed or None)
    ("vae", 1, 48, 80, 7), ("vae", 3, 32, 24, None), ("sd:11", 2, 40, 56, 3), ("sd:12", 1, 24, 32, None),
]


def make_encode_inputs(seed: int) -> dict:
    vae, b, h, w, gen = ENCODE_CASES[seed % len(ENCODE_CASES)]
    return {"vae": vae, "images": _images(seed, b, h, w), "gen_seed": gen, "global_seed": 100 + seed}


def _latent_shape(inputs: dict) -> tuple:
    b, _, h, w = inputs["images"].shape
    return (b, 4, h // 8, w // 8)


def compare_encode_shape(inputs: dict, out) -> None:
    expect_shape(out, _latent_shape(inputs), f"encode_image on images {tuple(inputs['images'].shape)}",
                 "The latent is [B, latent_channels, H/8, W/8]: 4 channels, 8x smaller on each side.")
    if out.dtype != torch.float32:
        raise CheckFailed(f"encode_image returned dtype {out.dtype}; a float32 VAE gives float32 latents.")


def compare_encode_values(inputs: dict, out) -> None:
    compare_encode_shape(inputs, out)
    vae, images = _oracle_vae(inputs["vae"]), inputs["images"]
    sf = vae.config.scaling_factor
    gen = inputs["gen_seed"]
    with torch.no_grad():
        post = _posterior(vae, images)
        raw = post.sample(generator=seeded(gen)) if gen is not None else post.mode()
        expected = raw * sf
        if _close(out, expected, 1e-4, 1e-4):
            return
        global_sample = post.sample(generator=seeded(inputs["global_seed"]))
        post01 = _posterior(vae, images, normalise=False)
        raw01 = post01.sample(generator=seeded(gen)) if gen is not None else post01.mode()
        suspects = [
            Suspect("no_scaling", raw, "you returned the raw latent: multiply it by "
                    "vae.config.scaling_factor, so that the latents have about unit variance."),
            Suspect("divided", raw / sf, "you divided by vae.config.scaling_factor; encoding MULTIPLIES "
                    "(decoding divides)."),
            Suspect("hard_coded", raw * 0.18215, "you used 0.18215, SD 1.x's value; read "
                    "vae.config.scaling_factor: every VAE has its own."),
            Suspect("no_normalise", raw01 * sf, "the encoder received images in [0, 1]; map them to "
                    "[-1, 1] first (2 * images - 1), the range SD's VAE was trained on."),
        ]
        if gen is not None:
            suspects += [
                Suspect("global_rng", global_sample * sf, "you sampled without the generator: pass it "
                        "on, latent_dist.sample(generator), so the result is reproducible."),
                Suspect("mean_ignores_generator", post.mode() * sf, "you returned the mean although a "
                        "generator was given: with a generator, SAMPLE the posterior "
                        "(latent_dist.sample(generator)); the mean is for generator=None."),
            ]
        else:
            suspects.append(Suspect("sampled_without_generator", global_sample * sf, "with generator=None "
                                    "return the posterior MEAN (deterministic), not a sample."))
    where = "the tiny VAE" if inputs["vae"] == "vae" else "a randomly initialised SD-shaped AutoencoderKL"
    expect_close(out, expected, "encode_image's latent", atol=1e-4, rtol=1e-4, suspects=suspects,
                 context=f"on {where}, images {tuple(images.shape)}, "
                         f"{'a generator' if gen is not None else 'generator=None'}")


# --------------------------------------------------------------------- ex1b decode_latents

DECODE_CASES = [("vae", 1, 6, 10), ("vae", 2, 4, 4), ("sd:21", 2, 5, 3), ("sd:22", 1, 4, 6)]


def make_decode_inputs(seed: int) -> dict:
    vae, b, h, w = DECODE_CASES[seed % len(DECODE_CASES)]
    g = seeded(seed)
    return {"vae": vae, "latents": torch.randn(b, 4, h, w, generator=g) * 1.2}


def compare_decode_shape(inputs: dict, out) -> None:
    b, _, h, w = inputs["latents"].shape
    expect_shape(out, (b, 3, 8 * h, 8 * w), f"decode_latents on latents {tuple(inputs['latents'].shape)}",
                 "The decoder gives [B, 3, 8h, 8w] images.")
    lo, hi = float(out.min()), float(out.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise CheckFailed(f"decode_latents returned values from {lo:.3g} to {hi:.3g}; images come back in "
                          "[0, 1]: map the decoder's [-1, 1] output with x / 2 + 0.5 and clamp to [0, 1].")


def compare_decode_values(inputs: dict, out) -> None:
    b, _, h, w = inputs["latents"].shape
    expect_shape(out, (b, 3, 8 * h, 8 * w), "decode_latents' image")
    vae, z = _oracle_vae(inputs["vae"]), inputs["latents"]
    sf = vae.config.scaling_factor
    post = _processor(vae).postprocess
    with torch.no_grad():
        raw = vae.decode(z / sf).sample
        expected = post(raw, output_type="pt")
        if _close(out, expected, 2e-4, 1e-4):
            return
        suspects = [
            Suspect("multiplied", post(vae.decode(z * sf).sample, output_type="pt"),
                    "you multiplied by vae.config.scaling_factor before decoding; decoding DIVIDES "
                    "(it undoes the multiplication of encode_image)."),
            Suspect("not_divided", post(vae.decode(z).sample, output_type="pt"),
                    "you decoded the scaled latents as they are: divide by vae.config.scaling_factor first."),
            Suspect("hard_coded", post(vae.decode(z / 0.18215).sample, output_type="pt"),
                    "you used 0.18215, SD 1.x's value; read vae.config.scaling_factor."),
            Suspect("no_denormalise", raw.clamp(0, 1), "the decoder's output is in [-1, 1]: map it to "
                    "[0, 1] with x / 2 + 0.5 before clamping."),
            Suspect("not_clamped", raw / 2 + 0.5, "clamp the image to [0, 1] after mapping it: the decoder "
                    "can overshoot."),
        ]
    where = "the tiny VAE" if inputs["vae"] == "vae" else "a randomly initialised SD-shaped AutoencoderKL"
    expect_close(out, expected, "decode_latents' image", atol=2e-4, rtol=1e-4, suspects=suspects,
                 context=f"on {where}, latents {tuple(z.shape)}")


# --------------------------------------------------------------------- ex1 bad input

def make_bad_image_inputs(seed: int) -> dict:
    g = seeded(seed)
    return {"cases": {"outside [0, 1]": torch.rand(1, 3, 16, 24, generator=g) * 2 - 0.5,
                      "4 channels": torch.rand(2, 4, 16, 16, generator=g),
                      "20 x 16 pixels": torch.rand(1, 3, 20, 16, generator=g)}}


_IMAGE_HINTS = {"outside [0, 1]": ("[0, 1]", ("0", "1")),
                "4 channels": ("3 channels", ("3",)),
                "20 x 16 pixels": ("a height and width divisible by 8", ("8",))}


def compare_bad_images(inputs: dict, out: dict) -> None:
    for case, (expected, words) in _IMAGE_HINTS.items():
        r = out.get(case, {})
        if not r.get("raised"):
            raise CheckFailed(f"encode_image accepted images with {case}; it must raise a ValueError "
                              f"that says what it expected ({expected}). Keep the l5.check_images(...) line.")
        if r["type"] not in ("ValueError", "TypeError"):
            raise CheckFailed(f"encode_image raised {r['type']} on images with {case}: {r['message'][:200]}; "
                              f"raise a ValueError saying what was expected ({expected}).")
        if not all(w in r["message"] for w in words):
            raise CheckFailed(f"encode_image's error for images with {case} ({r['message'][:200]!r}) does not "
                              f"say what was expected ({expected}).")


def make_bad_latent_inputs(seed: int) -> dict:
    g = seeded(seed)
    return {"cases": {"3 channels": torch.randn(1, 3, 4, 4, generator=g),
                      "no batch dimension": torch.randn(4, 4, 4, generator=g)}}


def compare_bad_latents(inputs: dict, out: dict) -> None:
    for case in inputs["cases"]:
        r = out.get(case, {})
        if not r.get("raised") or r["type"] not in ("ValueError", "TypeError"):
            raise CheckFailed(f"decode_latents accepted latents with {case} (or raised something other than "
                              f"ValueError); it must refuse them with a message naming the expected shape "
                              f"[B, 4, h, w]. Keep the l5.check_latents(...) line.")
        if "4" not in r["message"]:
            raise CheckFailed(f"decode_latents' error for latents with {case} ({r['message'][:200]!r}) does not "
                              "say what was expected (4 latent channels, [B, 4, h, w]).")


# --------------------------------------------------------------------- ex2 estimate_scaling_factor

ESTIMATE_CASES = [("vae", 6, 48, 48), ("vae", 1, 64, 40), ("sd:31", 3, 32, 32), ("sd:32", 2, 40, 24)]


def make_estimate_inputs(seed: int) -> dict:
    vae, b, h, w = ESTIMATE_CASES[seed % len(ESTIMATE_CASES)]
    return {"vae": vae, "images": _images(200 + seed, b, h, w), "global_seed": 300 + seed}


def compare_estimate(inputs: dict, out: dict) -> None:
    if out.get("value") is None:
        raise CheckFailed(f"estimate_scaling_factor returned a {out.get('type')}; return one number "
                          "(a Python float).")
    value = out["value"]
    vae, images = _oracle_vae(inputs["vae"]), inputs["images"]
    with torch.no_grad():
        post = _posterior(vae, images)
        mean = post.mode()
        expected = 1.0 / float(mean.flatten().std())
        if abs(value - expected) <= 5e-3 * abs(expected):
            return
        raw01 = _posterior(vae, images, normalise=False).mode()
        sf = vae.config.scaling_factor
        suspects = {
            "per_channel": (1.0 / float(mean.std(dim=(0, 2, 3)).mean()),
                            "you averaged per-channel standard deviations; take ONE std over every entry "
                            "of the latents (all images, channels and positions), as the LDM authors did."),
            "per_channel_factors": (float((1.0 / mean.std(dim=(0, 2, 3))).mean()),
                                    "you averaged one factor per channel; the scaling factor is one number: "
                                    "1 / std over every entry of the latents."),
            "per_image": (float((1.0 / mean.flatten(1).std(dim=1)).mean()) if len(mean) > 1 else float("nan"),
                          "you took a std per image; take ONE std over every entry of the whole batch."),
            "scaled": (expected / sf, "you measured the latents AFTER multiplying by scaling_factor (e.g. "
                       "with encode_image); measure the unscaled latents: vae.encode(...).latent_dist.mean."),
            "not_inverted": (1.0 / expected, "you returned the std; the factor is 1 / std, what makes the "
                             "latents' std 1."),
            "no_normalise": (1.0 / float(raw01.flatten().std()), "the encoder received images in [0, 1]; map "
                             "them to [-1, 1] first."),
            "sampled": (1.0 / float((post.sample(generator=seeded(inputs["global_seed"]))).flatten().std()),
                        "you measured a random sample of the posterior; use the posterior mean "
                        "(latent_dist.mean), so the estimate is deterministic."),
        }
    if abs(value - expected) <= 5e-3 * abs(expected):
        return
    for name, (v, message) in suspects.items():
        if math.isfinite(v) and abs(value - v) <= 5e-3 * abs(v) and abs(v - expected) > 5e-3 * abs(expected):
            raise CheckFailed(f"estimate_scaling_factor is wrong: {message}")
    where = "the tiny VAE" if inputs["vae"] == "vae" else "a randomly initialised SD-shaped AutoencoderKL"
    raise CheckFailed(f"estimate_scaling_factor gave {value:.5g}, expected {expected:.5g} (within 0.5%) on "
                      f"{where} with images {tuple(images.shape)}: 1 / (std of every entry of the "
                      "posterior means of the images mapped to [-1, 1]).")


# --------------------------------------------------------------------- ex3 compression_ratio

RATIO_CASES = [
    [((512, 512), {}), ((768, 512), {}), ((64, 96), {"channels": 1, "downsample": 4, "latent_channels": 16})],
    [((256, 256), {"latent_channels": 16}), ((96, 64), {"downsample": 16, "latent_channels": 8}),
     ((1024, 768), {"channels": 3, "downsample": 8, "latent_channels": 4})],
    [((40, 24), {}), ((64, 64), {"channels": 4, "downsample": 2, "latent_channels": 4}),
     ((128, 384), {"downsample": 32, "latent_channels": 64})],
]


def make_ratio_inputs(seed: int) -> dict:
    return {"cases": [{"args": list(a), "kwargs": dict(k)} for a, k in RATIO_CASES[seed % len(RATIO_CASES)]]}


def _ratio(h, w, channels=3, downsample=8, latent_channels=4):
    return (channels * h * w) / (latent_channels * (h // downsample) * (w // downsample))


def compare_ratio(inputs: dict, out: list) -> None:
    for case, got in zip(inputs["cases"], out):
        args, kw = case["args"], case["kwargs"]
        call = "compression_ratio(" + ", ".join([str(a) for a in args] + [f"{k}={v}" for k, v in kw.items()]) + ")"
        if got["value"] is None:
            raise CheckFailed(f"{call} returned a {got['type']}; return a float.")
        expected = _ratio(*args, **kw)
        v = got["value"]
        if abs(v - expected) <= 1e-6 * expected:
            if got["type"] != "float":
                raise CheckFailed(f"{call} returned the {got['type']} {v:g}; return a float (use /, not //).")
            continue
        h, w = args
        c, f, lc = kw.get("channels", 3), kw.get("downsample", 8), kw.get("latent_channels", 4)
        known = [
            (1 / expected, "the ratio is inverted: divide the PIXEL values by the LATENT values."),
            ((c * h * w) / (lc * (h // f) * w), "the downsampling applies to BOTH sides: H/f x W/f, "
             "so the number of positions shrinks f^2 times (the downsample factor squared)."),
            ((c * h * w) / (lc * h * w / f), "the downsampling applies to BOTH sides: the number of "
             "positions shrinks f^2 = 64 times, not f = 8 times (the downsample factor squared)."),
            ((h * w) / ((h // f) * (w // f)), "you compared spatial positions only; count the channels too "
             "(C x H x W pixel values vs C_lat x H/f x W/f latent values)."),
            ((c * h * w) / ((h // f) * (w // f)), "you left out the latent channels; the latent has "
             "latent_channels values at every position."),
        ]
        for k, message in known:
            if abs(v - k) <= 1e-6 * abs(k):
                raise CheckFailed(f"{call} = {v:g}, expected {expected:g}: {message}")
        raise CheckFailed(f"{call} = {v:g}, expected {expected:g} = (C H W) / (C_lat (H/f) (W/f)).")


def make_ratio_bad_inputs(seed: int) -> dict:
    return {"cases": [{"args": [500, 512], "kwargs": {}}, {"args": [64, 60], "kwargs": {"downsample": 8}},
                      {"args": [48, 48], "kwargs": {"downsample": 32}}]}


def compare_ratio_bad(inputs: dict, out: list) -> None:
    for case, got in zip(inputs["cases"], out):
        h, w = case["args"]
        f = case["kwargs"].get("downsample", 8)
        if not got["raised"] or got["type"] != "ValueError":
            raise CheckFailed(f"compression_ratio({h}, {w}, downsample={f}) must raise a ValueError: "
                              f"{h} x {w} is not divisible by {f}"
                              + (f" (it raised {got['type']})" if got["raised"] else " (it returned a value)") + ".")
        if str(f) not in got["message"]:
            raise CheckFailed(f"the error of compression_ratio({h}, {w}, downsample={f}) ({got['message'][:200]!r}) "
                              f"should say that height and width must be divisible by {f}.")


# --------------------------------------------------------------------- ex4 trace_pipeline

TRACE_CASES = [  # prompt(s), steps, guidance, height, width
    ("a red circle", 2, 7.5, None, None),
    (["a blue star", "two green squares"], 3, 5.0, 48, 80),
    ("a yellow triangle at the top left", 2, 1.0, 64, 32),
]


def make_trace_inputs(seed: int) -> dict:
    prompt, steps, w, h, wd = TRACE_CASES[seed % len(TRACE_CASES)]
    return {"prompt": prompt, "steps": steps, "guidance_scale": w, "height": h, "width": wd, "seed": seed}


def _config(part: str) -> dict:
    return json.loads((_tiny_folder() / part).read_text())


def _expected_trace(inputs: dict) -> dict:
    """The shapes at every stage, derived from the pipeline's configuration files."""
    unet, vae = _config("unet/config.json"), _config("vae/config.json")
    text = _config("text_encoder/config.json")
    t_len = int(_config("tokenizer/tokenizer_config.json")["model_max_length"])
    f = 2 ** (len(vae["block_out_channels"]) - 1)
    h = inputs["height"] or unet["sample_size"] * f
    w = inputs["width"] or unet["sample_size"] * f
    b = 1 if isinstance(inputs["prompt"], str) else len(inputs["prompt"])
    cfg = inputs["guidance_scale"] > 1 and unet.get("time_cond_proj_dim") is None
    bb = 2 * b if cfg else b
    lat = (unet["in_channels"], h // f, w // f)
    return {"token_ids": (b, t_len), "text_embeddings": (bb, t_len, text["hidden_size"]),
            "initial_latents": (b, *lat), "unet_input": (bb, *lat), "noise_pred": (bb, unet["out_channels"], *lat[1:]),
            "final_latents": (b, *lat), "image": (b, vae["out_channels"], h, w)}, cfg


def compare_trace_contract(inputs: dict, out: dict) -> None:
    keys = list(l5_latents.TRACE_KEYS)
    if not out["is_dict"]:
        raise CheckFailed(f"trace_pipeline returned a {out['type']}; return an OrderedDict (or dict) with the "
                          f"keys {keys}.")
    got = [e["key"] for e in out["entries"]]
    if got != keys:
        raise CheckFailed(f"trace_pipeline's keys are {got}; expected exactly {keys}, in this order (the order "
                          "in which the stages happen).")
    for e in out["entries"]:
        if e["shape"] is None or not e["tuple"]:
            raise CheckFailed(f"trace[{e['key']!r}] is a {e['type']}; every entry must be a tuple of ints "
                              "(tuple(tensor.shape)).")
    if out["unet_calls"] == 0:
        raise CheckFailed("trace_pipeline never ran the pipeline's U-Net: record the shapes from a real run of "
                          "pipe(...), not from the configuration.")


def compare_trace_shapes(inputs: dict, out: dict) -> None:
    compare_trace_contract(inputs, out)
    expected, cfg = _expected_trace(inputs)
    got = {e["key"]: tuple(e["shape"]) for e in out["entries"]}
    prompt = inputs["prompt"]
    b = 1 if isinstance(prompt, str) else len(prompt)
    where = (f"for prompt={prompt!r}, num_inference_steps={inputs['steps']}, guidance_scale="
             f"{inputs['guidance_scale']}, height={inputs['height']}, width={inputs['width']}")
    for key in l5_latents.TRACE_KEYS:
        e, g = expected[key], got[key]
        if g == e:
            continue
        hint = "it must be recorded from the run."
        if cfg and key in ("unet_input", "text_embeddings", "noise_pred") and g[0] == b and g[1:] == e[1:]:
            hint = {"unet_input": "the CFG doubling is missing: with guidance_scale > 1 the pipeline sends "
                                  "[uncond; cond] through the U-Net as ONE batch of 2B.",
                    "text_embeddings": "the U-Net receives the unconditional AND the conditional text "
                                       "embeddings stacked (2B rows) when guidance is on.",
                    "noise_pred": "you recorded the noise prediction after the CFG combination; record "
                                  "what the U-Net itself returns (2B rows with guidance)."}[key]
        elif not cfg and key in ("unet_input", "text_embeddings", "noise_pred") and g[0] == 2 * b:
            hint = ("guidance_scale <= 1 turns classifier-free guidance off (diffusers' rule), so there is "
                    "no unconditional half: record what the run did, do not assume CFG.")
        elif key == "image" and len(g) == 4 and g == (e[0], e[2], e[3], e[1]):
            hint = "the image must be channels-first, [B, 3, H, W] (the tensor the VAE decoder returns)."
        elif key == "token_ids" and g[0] == 2 * b:
            hint = "record the token ids of the prompt only, [B, T] (the empty negative prompt is tokenised separately)."
        raise CheckFailed(f"trace[{key!r}] = {g}, expected {e} (from the pipeline's configuration) {where}: {hint}")


# --------------------------------------------------------------------- ex5 latent_diffusion_loss

LOSS_CASES = [(2, 64, 64), (1, 48, 80), (3, 32, 32)]


def make_loss_inputs(seed: int) -> dict:
    b, h, w = LOSS_CASES[seed % len(LOSS_CASES)]
    g = seeded(500 + seed)
    return {"images": _images(600 + seed, b, h, w), "text_embeddings": torch.randn(b, 24, 64, generator=g),
            "seed": 700 + seed}


def _oracle_loss(inputs: dict, *, scale=True, order="t_first", sample=True, target="noise") -> torch.Tensor:
    vae = _oracle_vae("vae")
    unet, sched = _oracle_unet()
    g = seeded(inputs["seed"])
    images, text = inputs["images"], inputs["text_embeddings"]
    with torch.no_grad():
        post = _posterior(vae, images)
        z0 = post.sample(generator=g) if sample else post.mode()
        if scale:
            z0 = z0 * vae.config.scaling_factor
        n_t = sched.config.num_train_timesteps
        if order == "t_first":
            t = torch.randint(0, n_t, (len(images),), generator=g)
            noise = torch.randn(z0.shape, generator=g)
        else:
            noise = torch.randn(z0.shape, generator=g)
            t = torch.randint(0, n_t, (len(images),), generator=g)
        noisy = sched.add_noise(z0, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=text).sample
        return F.mse_loss(pred, noise if target == "noise" else z0)


def _loss_value(out: dict):
    if out.get("loss") is None:
        raise CheckFailed(f"latent_diffusion_loss returned a {out.get('type')}; return the loss as a "
                          "0-dim torch.Tensor (F.mse_loss(...) gives one).")
    loss = out["loss"]
    if loss.numel() != 1 or loss.ndim != 0:
        raise CheckFailed(f"latent_diffusion_loss returned a tensor of shape {tuple(loss.shape)}; return ONE "
                          "number, the mean squared error over every entry (a 0-dim tensor).")
    return loss


def compare_loss_values(inputs: dict, out: dict) -> None:
    loss = _loss_value(out)
    expected = _oracle_loss(inputs)
    if _close(loss, expected, 1e-5, 1e-4):
        return
    suspects = [
        Suspect("unscaled", _oracle_loss(inputs, scale=False), "you added noise to the UNSCALED latent; "
                "diffusion runs on the posterior sample multiplied by vae.config.scaling_factor."),
        Suspect("noise_first", _oracle_loss(inputs, order="noise_first"), "your random draws are in another "
                "order: after the posterior sample, draw the timesteps first, then the noise."),
        Suspect("predict_latent", _oracle_loss(inputs, target="latent"), "your target is the clean latent; "
                "the U-Net predicts the NOISE (epsilon), as in pixel-space DDPM."),
        Suspect("posterior_mean", _oracle_loss(inputs, sample=False), "you encoded with the posterior mean; "
                "training SAMPLES the posterior with the generator (latent_dist.sample(generator)), first of all draws."),
    ]
    b, _, h, w = inputs["images"].shape
    expect_close(loss, expected, "latent_diffusion_loss", atol=1e-5, rtol=1e-4, suspects=suspects,
                 context=f"on images {(b, 3, h, w)} with the tiny VAE and U-Net",
                 hint="Order of random draws, all from `generator`: posterior sample, timesteps, noise.")


def compare_loss_frozen(inputs: dict, out: dict) -> None:
    _loss_value(out)
    if out.get("vae_grad"):
        raise CheckFailed("gradients reached the VAE: it must stay frozen (it is trained before, and separately "
                          "from, the diffusion model). Encode under torch.no_grad().")
    if not out.get("requires_grad") or not out.get("unet_grad"):
        raise CheckFailed("no gradient reaches the U-Net: only the VAE is frozen. Keep the U-Net's forward pass "
                          "and the loss outside torch.no_grad() so that loss.backward() trains the U-Net.")


CHECKS = Checks(
    Check("encode_image_shape", make_encode_inputs, run_encode, compare_encode_shape, seeds=range(2),
          forbid=ENCODE_ORACLES),
    Check("encode_image_bad_input", make_bad_image_inputs, run_bad_images, compare_bad_images, seeds=[0]),
    Check("encode_image_values", make_encode_inputs, run_encode, compare_encode_values, seeds=range(4),
          forbid=ENCODE_ORACLES),
    Check("decode_latents_shape", make_decode_inputs, run_decode, compare_decode_shape, seeds=range(2),
          forbid=DECODE_ORACLES),
    Check("decode_latents_bad_input", make_bad_latent_inputs, run_bad_latents, compare_bad_latents, seeds=[0]),
    Check("decode_latents_values", make_decode_inputs, run_decode, compare_decode_values, seeds=range(4),
          forbid=DECODE_ORACLES),
    Check("estimate_scaling_factor", make_estimate_inputs, run_estimate, compare_estimate, seeds=range(4),
          forbid=ENCODE_ORACLES),
    Check("compression_ratio_values", make_ratio_inputs, run_ratio, compare_ratio, seeds=range(3)),
    Check("compression_ratio_bad_input", make_ratio_bad_inputs, run_ratio_bad, compare_ratio_bad, seeds=[0]),
    Check("trace_pipeline_contract", make_trace_inputs, run_trace, compare_trace_contract, seeds=[0]),
    Check("trace_pipeline_shapes", make_trace_inputs, run_trace, compare_trace_shapes, seeds=range(3)),
    Check("latent_diffusion_loss_values", make_loss_inputs, run_loss, compare_loss_values, seeds=range(3)),
    Check("latent_diffusion_loss_frozen", make_loss_inputs, run_loss, compare_loss_frozen, seeds=range(2)),
    module=__name__,
)
#: What a hidden test line calls: ``hidden.check("<name>", <student objects>)``.
check = CHECKS
