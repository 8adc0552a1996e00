"""Train the tiny text-to-image pipeline: a complete diffusers ``StableDiffusionPipeline``.

Instructor build tooling (``make tiny-models``); notebooks never import this module.

Parts (each a standard library class, saved in the standard folder layout)::

    tokenizer/     transformers CLIPTokenizer (CLIP BPE vocabulary vendored from open_clip,
                   model_max_length 24 (the tiny CLIP's context) instead of SD's 77; longer
                   prompts are truncated exactly as in SD: first 23 tokens + <|endoftext|>)
    text_encoder/  transformers CLIPTextModel, 2 layers, hidden size 64: the tiny CLIP's
                   text tower, copied weight for weight (``sdcourse.tiny.convert``) and frozen
    unet/          diffusers UNet2DConditionModel, block_out_channels (48, 96), cross-attention
                   to the text at 8x8 (down and up) and in the 4x4 middle block (dim 64)
    vae/           the tiny AutoencoderKL (trained first by train_vae.py; 64x64 px <-> 4x8x8)
    scheduler/     diffusers DDIMScheduler with SD 1.x's noise schedule (scaled_linear,
                   beta 0.00085 -> 0.012, 1000 steps, epsilon prediction)

Training is SD's recipe at toy scale: encode shapes-world images with the frozen VAE,
multiply by ``vae.config.scaling_factor``, add noise at a random timestep, and train the
UNet to predict the noise from the noisy latent, the timestep and the caption's token
states from the frozen text encoder (SD 1.x froze OpenAI CLIP ViT-L/14's text tower; this
pipeline freezes the tiny CLIP's, so ``make tiny-models`` trains the CLIP first).
30% of captions are replaced by the empty prompt "" so that the same network also learns
the unconditional prediction that classifier-free guidance needs (SD used 10%). Three changes
together moved this pipeline's best guidance scale from 3 to SD's 7.5: this 30% (instead of
15%), a wider UNet (48/96 channels instead of 32/64), and VAE latents centred on the training
scenes (``train_vae.centre_latents``); the model card lists what each did alone. The shipped
UNet is an exponential moving average (EMA) of the trained weights.

Run: ``python -m sdcourse.tiny.train_pipeline [--steps N] [--out DIR] [--clip DIR]`` (needs
the VAE in ``<out>/vae`` and the tiny CLIP in ``<models>/tiny-clip``; ``build_all`` trains
both first).
"""
from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import torch

from sdcourse import shapes
from sdcourse.tiny import common, tokenizer as tok_mod

UNET_CONFIG = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(48, 96),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    cross_attention_dim=64, attention_head_dim=2, norm_num_groups=8,
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                        beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                        set_alpha_to_one=False, steps_offset=1)
KIND_PROBS = {"single": 0.85, "relation": 0.1, "count": 0.05}
DEFAULTS = dict(steps=3000, batch_size=64, lr=2e-3, seed=2024, n_images=6000, p_uncond=0.3, caption_noise=0.2,
                caption_noise_on="shape", ema_decay=0.995, prediction_type="epsilon", snr_gamma=0.0,
                zero_snr=0, width=48, threads=2, device="cpu")
PREDICTION_TYPES = ("epsilon", "v_prediction")
NOISE_ATTRIBUTES = ("colour", "shape")


@torch.no_grad()
def encode_dataset(vae, n: int, seed: int, batch: int = 64):
    """Encode ``n`` shapes-world training scenes (64 px). Returns (mean, std, specs) where
    mean/std are the VAE posterior's (n, 4, 8, 8) tensors (not yet scaled)."""
    data = shapes.make_dataset(n, split="train", seed=seed, size=64, kinds=tuple(KIND_PROBS),
                               kind_probs=tuple(KIND_PROBS.values()))
    specs = [s for _, _, s in data]
    means, stds = [], []
    for i in range(0, n, batch):
        x = common.to_model_range(np.stack([np.asarray(im) for im, _, _ in data[i:i + batch]]))
        d = vae.encode(x).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds), specs


def noise_attributes(on: str) -> list[str]:
    """``"colour,shape"`` -> ``["colour", "shape"]``, with a clear error for anything else."""
    keys = [k.strip() for k in on.split(",") if k.strip()]
    if not keys or any(k not in NOISE_ATTRIBUTES for k in keys):
        raise ValueError(f"caption noise attributes must be a comma-separated subset of {NOISE_ATTRIBUTES}, got {on!r}")
    return keys


def noisy_caption(spec: dict, rng: np.random.Generator, p: float, on: str = "colour,shape") -> str:
    """``shapes.random_caption(spec)``, except that with probability ``p`` a single-object
    caption names a wrong value of one attribute listed in ``on`` ("shape", "colour" or
    "colour,shape", picked with equal odds), like the many web captions (alt-text) that
    misdescribe their image. It keeps p(x | caption) broad, as in SD's training data, so that
    sampling without guidance follows the prompt less well than classifier-free guidance does
    (which pushes towards images the caption fits best)."""
    keys = noise_attributes(on)
    if p and spec["kind"] == "single" and rng.random() < p:
        obj = dict(spec["objects"][0])
        key = keys[int(rng.integers(len(keys)))] if len(keys) > 1 else keys[0]
        pool = [v for v in (shapes.COLOURS if key == "colour" else shapes.SHAPES) if v != obj[key]]
        obj[key] = pool[int(rng.integers(len(pool)))]
        spec = dict(spec, objects=[obj])
    return shapes.random_caption(spec, rng)


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids exactly as ``StableDiffusionPipeline.encode_prompt`` makes them: (B, model_max_length)."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def frozen_text_encoder(clip_dir: Path):
    """The tiny CLIP's text tower as a frozen ``transformers.CLIPTextModel`` (checked equal)."""
    import open_clip

    from sdcourse.tiny import convert

    if not (Path(clip_dir) / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"the tiny CLIP is missing ({Path(clip_dir) / 'open_clip_config.json'}); train it "
                                f"first with `python -m sdcourse.tiny.train_clip` or `make tiny-models`")
    name = "local-dir:" + str(clip_dir)
    clip = open_clip.create_model(name).eval()
    te = convert.clip_text_encoder(clip).requires_grad_(False)
    ids = open_clip.get_tokenizer(name)(["a red circle left of a blue square", "three orange stars", ""])
    diff = convert.max_state_difference(clip, te, ids)
    if diff > 1e-4:
        raise RuntimeError(f"converted text encoder differs from the CLIP text tower by {diff:g}")
    return te


def train(out: Path | None = None, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], seed: int = DEFAULTS["seed"], n_images: int = DEFAULTS["n_images"],
          p_uncond: float = DEFAULTS["p_uncond"], caption_noise: float = DEFAULTS["caption_noise"],
          caption_noise_on: str = DEFAULTS["caption_noise_on"],
          ema_decay: float = DEFAULTS["ema_decay"], prediction_type: str = DEFAULTS["prediction_type"],
          snr_gamma: float = DEFAULTS["snr_gamma"], zero_snr: int = DEFAULTS["zero_snr"],
          width: int = DEFAULTS["width"], threads: int = DEFAULTS["threads"], device: str = DEFAULTS["device"],
          clip_dir: Path | None = None, log_every: int = 100) -> dict:
    """Train and save the whole pipeline folder ``out`` (default ``<models>/tiny-sd``).

    ``prediction_type`` is what the UNet predicts ("epsilon" as SD 1.x, or "v_prediction" as
    SD 2.x); ``snr_gamma`` > 0 weights the loss by min(SNR, gamma) / SNR ("Min-SNR", Hang et
    al. 2023; for v-prediction min(SNR, gamma) / (SNR + 1)); ``zero_snr`` rescales the noise
    schedule so that the last timestep is pure noise (Lin et al. 2024), which needs
    v-prediction. ``device`` trains there ("cuda" when one is lent); random numbers are
    drawn on the CPU either way, so the data seen is the same."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    noise_attributes(caption_noise_on)
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    if zero_snr and prediction_type != "v_prediction":
        raise ValueError("zero_snr needs prediction_type='v_prediction' (epsilon is undefined at SNR 0)")
    dev = torch.device(device)
    common.set_threads(threads)
    common.quiet_libraries()
    out = Path(out) if out else common.models_dir() / "tiny-sd"
    clip_dir = Path(clip_dir) if clip_dir else common.models_dir() / "tiny-clip"
    vae_dir = out / "vae"
    if not (vae_dir / "config.json").is_file():
        raise FileNotFoundError(f"the tiny VAE is missing ({vae_dir / 'config.json'}); train it first with "
                                f"`python -m sdcourse.tiny.train_vae --out {vae_dir}` or `make tiny-models`")
    timer = common.Timer()
    g = common.seed_everything(seed)
    rng = np.random.default_rng(seed)

    text_encoder = frozen_text_encoder(clip_dir)
    max_length = text_encoder.config.max_position_embeddings
    tok_mod.write_tokenizer(out / "tokenizer", max_length=max_length)
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    vae = AutoencoderKL.from_pretrained(str(vae_dir)).eval().requires_grad_(False)
    sf = float(vae.config.scaling_factor)
    mean, std, specs = encode_dataset(vae, n_images, seed)
    t_encode = timer()
    print(f"[sd] encoded {n_images} images in {t_encode:.0f}s", flush=True)

    sched_cfg = dict(SCHEDULER_CONFIG, prediction_type=prediction_type)
    if zero_snr:
        sched_cfg.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    unet = UNet2DConditionModel(**dict(UNET_CONFIG, block_out_channels=(width, 2 * width))).to(dev)
    text_encoder.to(dev)
    noise_sched = DDPMScheduler(**{k: v for k, v in sched_cfg.items() if k != "set_alpha_to_one"})
    alphas_cumprod = noise_sched.alphas_cumprod.to(dev)
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    ema_unet = copy.deepcopy(unet).eval()
    ema_pairs = list(zip(ema_unet.parameters(), unet.parameters()))
    unet.train()
    ema_loss = None
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(len(specs), size=batch_size, replace=False))
        eps_lat = torch.randn(mean[idx].shape, generator=g)
        latents = ((mean[idx] + std[idx] * eps_lat) * sf).to(dev)
        texts = ["" if rng.random() < p_uncond else noisy_caption(specs[int(i)], rng, caption_noise, caption_noise_on)
                 for i in idx]
        with torch.no_grad():
            cond = text_encoder(tokenize(tokenizer, texts).to(dev))[0]
        noise = torch.randn(latents.shape, generator=g).to(dev)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch_size,), generator=g).to(dev)
        noisy = noise_sched.add_noise(latents, noise, t)
        target = noise if prediction_type == "epsilon" else noise_sched.get_velocity(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        if snr_gamma > 0:
            a = alphas_cumprod[t]
            snr = a / (1 - a).clamp(min=1e-8)
            weight = snr.clamp(max=snr_gamma) / (snr + 1 if prediction_type == "v_prediction" else snr.clamp(min=1e-8))
            loss = (weight * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        else:
            loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, p in ema_pairs:
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"[sd] step {step:5d}/{steps}  loss {ema_loss:.4f}  {timer():.0f}s", flush=True)
    scheduler = DDIMScheduler(**sched_cfg)
    text_encoder.to("cpu")
    # a tokenizer that has padded records its padding state in the tokenizer_config.json it saves:
    # save a fresh one, so the shipped config stays what write_tokenizer wrote
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=ema_unet.to("cpu"),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    recipe = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, n_images=n_images, p_uncond=p_uncond,
                  caption_noise=caption_noise, caption_noise_on=caption_noise_on, ema_decay=ema_decay,
                  prediction_type=prediction_type, snr_gamma=snr_gamma, zero_snr=zero_snr, width=width)
    stats = dict(model="tiny-sd", **recipe, device=device, kind_probs=KIND_PROBS, vae_scaling_factor=sf,
                 text_encoder_from=f"../{clip_dir.name}" if clip_dir.parent == out.parent else common.rel(clip_dir),
                 max_length=max_length,
                 unet_params=sum(p.numel() for p in unet.parameters()),
                 text_encoder_params=sum(p.numel() for p in text_encoder.parameters()),
                 encode_wall_s=round(t_encode, 1), train_wall_s=round(timer(), 1), final_loss=round(ema_loss, 4),
                 peak_rss_mb=round(common.peak_rss_mb()), threads=torch.get_num_threads(),
                 command=command_line(**recipe))
    common.write_json(out / "training_stats.json", stats)
    common.readable_by_all(out)
    print(f"[sd] saved to {out}  {stats['train_wall_s']}s", flush=True)
    return stats


def command_line(**options) -> str:
    """The ``python -m sdcourse.tiny.train_pipeline`` command that trains with ``options``
    (only those that differ from DEFAULTS are written)."""
    args = [f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v != DEFAULTS[k]]
    return " ".join(["python -m sdcourse.tiny.train_pipeline", *args])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--clip", type=Path, default=None, help="tiny CLIP folder (default <models>/tiny-clip)")
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    train(out=a.out, clip_dir=a.clip, **{k: getattr(a, k) for k in DEFAULTS})


if __name__ == "__main__":
    main()
