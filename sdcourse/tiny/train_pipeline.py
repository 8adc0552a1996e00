"""Train the tiny text-to-image pipeline: a complete diffusers ``StableDiffusionPipeline``.

Parts (each a standard library class, saved in the standard folder layout)::

    tokenizer/     transformers CLIPTokenizer (CLIP BPE vocabulary vendored from open_clip,
                   model_max_length 32 instead of SD's 77; longer prompts are truncated
                   exactly as in SD: first 31 tokens + <|endoftext|>)
    text_encoder/  transformers CLIPTextModel, 2 layers, hidden size 64
    unet/          diffusers UNet2DConditionModel, block_out_channels (32, 64), cross-attention
                   to the text at 8x8 (down and up) and in the 4x4 middle block (dim 64)
    vae/           the tiny AutoencoderKL (trained first by train_vae.py; 64x64 px <-> 4x8x8)
    scheduler/     diffusers DDIMScheduler with SD 1.x's noise schedule (scaled_linear,
                   beta 0.00085 -> 0.012, 1000 steps, epsilon prediction)

Training is SD's recipe at toy scale: encode shapes-world images with the frozen VAE,
multiply by ``vae.config.scaling_factor``, add noise at a random timestep, and train the
UNet (and, unlike SD, the text encoder too: there is no large pretrained one to reuse) to
predict the noise from the noisy latent, the timestep and the caption's token embeddings.
15% of captions are replaced by the empty prompt "" so that the same network also learns
the unconditional prediction that classifier-free guidance needs. The shipped UNet and
text encoder are an exponential moving average (EMA) of the trained weights.

Run: ``python -m sdcourse.tiny.train_pipeline [--steps N] [--out DIR]`` (needs the VAE in
``<out>/vae``; ``build_all`` trains it first).
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

MAX_LENGTH = 32
TEXT_CONFIG = dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=2, max_position_embeddings=MAX_LENGTH, hidden_act="quick_gelu",
                   projection_dim=64, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
UNET_CONFIG = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    cross_attention_dim=64, attention_head_dim=2, norm_num_groups=8,
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                        beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False,
                        set_alpha_to_one=False, steps_offset=1)
KIND_PROBS = {"single": 0.85, "relation": 0.1, "count": 0.05}
DEFAULTS = dict(steps=800, batch_size=64, lr=1e-3, seed=2024, n_images=3000, p_uncond=0.15,
                ema_decay=0.995, threads=2)


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


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids exactly as ``StableDiffusionPipeline.encode_prompt`` makes them: (B, MAX_LENGTH)."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def train(out: Path | None = None, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], seed: int = DEFAULTS["seed"], n_images: int = DEFAULTS["n_images"],
          p_uncond: float = DEFAULTS["p_uncond"], ema_decay: float = DEFAULTS["ema_decay"],
          threads: int = DEFAULTS["threads"], log_every: int = 100) -> dict:
    """Train and save the whole pipeline folder ``out`` (default ``<models>/tiny-sd``)."""
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    common.set_threads(threads)
    common.quiet_libraries()
    out = Path(out) if out else common.models_dir() / "tiny-sd"
    vae_dir = out / "vae"
    if not (vae_dir / "config.json").is_file():
        raise FileNotFoundError(f"the tiny VAE is missing ({vae_dir / 'config.json'}); train it first with "
                                f"`python -m sdcourse.tiny.train_vae --out {vae_dir}` or `make tiny-models`")
    timer = common.Timer()
    g = common.seed_everything(seed)
    rng = np.random.default_rng(seed)

    tok_mod.write_tokenizer(out / "tokenizer", max_length=MAX_LENGTH)
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    vae = AutoencoderKL.from_pretrained(str(vae_dir)).eval().requires_grad_(False)
    sf = float(vae.config.scaling_factor)
    mean, std, specs = encode_dataset(vae, n_images, seed)
    t_encode = timer()
    print(f"[sd] encoded {n_images} images in {t_encode:.0f}s", flush=True)

    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    text_encoder.get_input_embeddings().weight.requires_grad_(False)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    noise_sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    params = [p for p in list(unet.parameters()) + list(text_encoder.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_pairs = [(pe, p) for m_e, m in ((ema_unet, unet), (ema_te, text_encoder))
                 for pe, p in zip(m_e.parameters(), m.parameters())]
    unet.train(), text_encoder.train()
    ema_loss = None
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(len(specs), size=batch_size, replace=False))
        eps_lat = torch.randn(mean[idx].shape, generator=g)
        latents = (mean[idx] + std[idx] * eps_lat) * sf
        texts = ["" if rng.random() < p_uncond else shapes.random_caption(specs[int(i)], rng) for i in idx]
        ids = tokenize(tokenizer, texts)
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch_size,), generator=g)
        noisy = noise_sched.add_noise(latents, noise, t)
        cond = text_encoder(ids)[0]
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
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
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=ema_te, tokenizer=tokenizer, unet=ema_unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    stats = dict(model="tiny-sd", steps=steps, batch_size=batch_size, lr=lr, seed=seed, n_images=n_images,
                 p_uncond=p_uncond, ema_decay=ema_decay, kind_probs=KIND_PROBS, vae_scaling_factor=sf,
                 unet_params=sum(p.numel() for p in unet.parameters()),
                 text_encoder_params=sum(p.numel() for p in text_encoder.parameters()),
                 encode_wall_s=round(t_encode, 1), train_wall_s=round(timer(), 1), final_loss=round(ema_loss, 4),
                 peak_rss_mb=round(common.peak_rss_mb()), threads=torch.get_num_threads(),
                 command=f"python -m sdcourse.tiny.train_pipeline --steps {steps}")
    common.write_json(out / "training_stats.json", stats)
    print(f"[sd] saved to {out}  {stats['train_wall_s']}s", flush=True)
    return stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    a = p.parse_args(argv)
    train(out=a.out, **{k: getattr(a, k) for k in DEFAULTS})


if __name__ == "__main__":
    main()
