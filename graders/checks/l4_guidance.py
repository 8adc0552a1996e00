"""Hidden checks for 6-3-4 "Text conditioning and guidance" (instructor-only).

Oracles: diffusers ``Attention`` with the student's weights copied in (exercise 1); the
tiny ``StableDiffusionPipeline`` with its default attention processors and a reference
recording processor (exercise 2a); ``torch.nn.functional.interpolate`` (2b); the guidance
formula of diffusers' pipeline (3a, 3b); the same pipeline called with the same latents and
settings, ``output_type="pt"`` (exercise 4). The sandbox-side ``run_*`` functions load the
tiny pipeline themselves (never the tier the student's notebook uses) and restore any state
they change (attention processors, scheduler, the notebook's ``classifier_free_guidance``).
Every check is make-inputs / run (sandbox side, ``run_*``) / compare (see ``common``).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

import sdcourse

from .common import Check, CheckFailed, Checks, Suspect, expect_close, expect_shape, seeded
from .runtime import module_facts

#: (diffusers.models.attention first: resolving it may import that module, which must bind the
#: real Attention class, before attention_processor.Attention is replaced for the check.)
ATTENTION_ORACLES = ["diffusers.models.attention.Attention",
                     "diffusers.models.attention_processor.Attention",
                     "torch.nn.MultiheadAttention",
                     "torch.nn.functional.multi_head_attention_forward",
                     "torch.nn.functional.scaled_dot_product_attention"]
#: Calling the default processors (their __call__): constructing them stays possible, so the
#: pipeline can still be loaded inside the check.
PROCESSOR_ORACLES = ["diffusers.models.attention_processor.AttnProcessor.__call__",
                     "diffusers.models.attention_processor.AttnProcessor2_0.__call__"]
INTERPOLATE_ORACLES: list[str] = []
_SD = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline"
PIPELINE_ORACLES = [f"{_SD}.__call__", f"{_SD}.encode_prompt", f"{_SD}._encode_prompt",
                    f"{_SD}.decode_latents", f"{_SD}.prepare_latents"]

#: The three-number example of exercise 3a.
EPS_UNCOND = (0.2, -0.1, 0.4)
EPS_COND = (0.3, -0.3, 0.5)
HAND_W = 7.5


# =========================================================================== sandbox side
# (top-level run_* / _run_* / RUN_* only; graders.checks.bundle cuts these out)

RUN_CACHE: dict = {}


def _run_tiny_pipe():
    """The tiny pipeline on the CPU, loaded once per process, reset to its shipped state."""
    if "pipe" not in RUN_CACHE:
        pipe = sdcourse.models.load_pipeline("tiny", device="cpu")
        RUN_CACHE["pipe"] = pipe
        RUN_CACHE["scheduler"] = (type(pipe.scheduler), dict(pipe.scheduler.config))
        RUN_CACHE["unet_procs"] = dict(pipe.unet.attn_processors)
        RUN_CACHE["vae_procs"] = dict(pipe.vae.attn_processors)
    pipe = RUN_CACHE["pipe"]
    cls, cfg = RUN_CACHE["scheduler"]
    pipe.scheduler = cls.from_config(cfg)
    pipe.unet.set_attn_processor(dict(RUN_CACHE["unet_procs"]))
    pipe.vae.set_attn_processor(dict(RUN_CACHE["vae_procs"]))
    return pipe


def _run_scheduler(pipe, name: str):
    """Swap in the scheduler ``name`` ("ddim" keeps the shipped one), built from the same
    config through ``pipe.scheduler.compatibles`` (no import needed)."""
    if name == "ddim":
        return
    wanted = {"euler": "EulerDiscreteScheduler"}[name]
    cls = next(c for c in pipe.scheduler.compatibles if c.__name__ == wanted)
    pipe.scheduler = cls.from_config(pipe.scheduler.config)


def run_attention(inputs: dict, cls):
    torch.manual_seed(inputs["_seed"])
    m = cls(inputs["query_dim"], inputs["context_dim"], inputs["head_dim"], heads=inputs["heads"])
    with torch.no_grad():
        for p in m.parameters():   # sharper softmax, so every wrong axis or scale shows
            p.mul_(inputs["sharpen"])
        facts = module_facts(m)
        ctx = inputs["context"]
        ctx = None if ctx is None else ctx.clone()
        facts["out"] = m(inputs["x"].clone(), ctx)
        both = m(inputs["x"].clone(), ctx, return_weights=True)
        if not isinstance(both, (tuple, list)) or len(both) != 2:
            raise TypeError("forward(x, context, return_weights=True) must return a tuple (output, weights)")
        facts["out_w"], facts["weights"] = both[0], both[1]
    return facts


def run_recorder(inputs: dict, cls):
    pipe = _run_tiny_pipe()
    rec, vae_rec = cls(), cls()
    try:
        pipe.unet.set_attn_processor(rec)
        pipe.vae.set_attn_processor(vae_rec)
        with torch.no_grad():
            image = pipe(inputs["prompts"], latents=inputs["latents"].clone(),
                         num_inference_steps=inputs["steps"], guidance_scale=inputs["w"],
                         output_type="pt").images
    except RuntimeError as exc:
        if "shape" not in str(exc):
            raise
        raise RuntimeError(f"{exc}. A shape mismatch inside your processor: Q must read hidden_states "
                           "([B, N, C]) and K and V must read encoder_hidden_states ([B, T, D], the text) "
                           "when it is given, hidden_states only in self-attention.") from None
    finally:
        pipe.unet.set_attn_processor(dict(RUN_CACHE["unet_procs"]))
        pipe.vae.set_attn_processor(dict(RUN_CACHE["vae_procs"]))
    maps = getattr(rec, "maps", None)
    if not isinstance(maps, list):
        raise TypeError(f"AttentionRecorder().maps must be a list (one tensor per cross-attention "
                        f"call), got {type(maps).__name__}")
    return {"image": image, "maps": [m for m in maps],
            "vae_maps": len(getattr(vae_rec, "maps", []) or [])}


def run_token_maps(inputs: dict, student):
    return student([m.clone() for m in inputs["maps"]], inputs["size"])


def run_hand(inputs: dict, cfg_by_hand):
    return cfg_by_hand()


def run_cfg(inputs: dict, student):
    return student(inputs["uncond"].clone(), inputs["cond"].clone(), inputs["w"])


def _run_reference_cfg(eps_uncond, eps_cond, guidance_scale):
    """Substituted for the notebook's classifier_free_guidance while exercise 4 is graded, so
    a mistake in exercise 3 costs only exercise 3."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def run_sample(inputs: dict, student):
    pipe = _run_tiny_pipe()
    _run_scheduler(pipe, inputs["scheduler"])
    fn = student
    while hasattr(fn, "__wrapped__"):          # @torch.no_grad() and other functools.wraps decorators
        fn = fn.__wrapped__
    names = getattr(fn, "__globals__", {})
    had = "classifier_free_guidance" in names
    saved = names.get("classifier_free_guidance")
    calls = []

    def hook(module, args, kwargs):
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        sample = args[0] if args else kwargs.get("sample")
        calls.append((int(sample.shape[0]) if sample is not None else -1,
                      None if ehs is None else ehs.detach().clone()))

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        if had:
            names["classifier_free_guidance"] = _run_reference_cfg
        prompt = inputs["prompts"][0] if inputs["as_string"] else list(inputs["prompts"])
        kwargs = {} if inputs["negative"] is None else {"negative_prompt": inputs["negative"]}
        image = student(pipe, prompt, inputs["w"], inputs["steps"], inputs["latents"].clone(), **kwargs)
    finally:
        handle.remove()
        if had:
            names["classifier_free_guidance"] = saved
        cls, cfg = RUN_CACHE["scheduler"]
        pipe.scheduler = cls.from_config(cfg)
    first = calls[0][1] if calls and calls[0][1] is not None else torch.zeros(0)
    return {"image": image, "batches": [b for b, _ in calls], "context": first}


# =========================================================================== trusted side

_ORACLE: dict = {}


def _one_thread(compare):
    """Run a comparison with one torch thread: the tiny pipeline's tensors are small, and on a
    busy machine (a grader running several jobs) a second thread only waits for the CPU."""
    @functools.wraps(compare)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return compare(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


def _oracle_pipe(scheduler: str = "ddim"):
    """The trusted side's own copy of the tiny pipeline (default processors)."""
    if "pipe" not in _ORACLE:
        pipe = sdcourse.models.load_pipeline("tiny", device="cpu")
        _ORACLE.update(pipe=pipe, scheduler=(type(pipe.scheduler), dict(pipe.scheduler.config)),
                       procs=dict(pipe.unet.attn_processors), vae_procs=dict(pipe.vae.attn_processors))
    pipe = _ORACLE["pipe"]
    cls, cfg = _ORACLE["scheduler"]
    pipe.scheduler = cls.from_config(cfg)
    pipe.unet.set_attn_processor(dict(_ORACLE["procs"]))
    pipe.vae.set_attn_processor(dict(_ORACLE["vae_procs"]))
    if scheduler != "ddim":
        wanted = {"euler": "EulerDiscreteScheduler"}[scheduler]
        new = next(c for c in pipe.scheduler.compatibles if c.__name__ == wanted)
        pipe.scheduler = new.from_config(pipe.scheduler.config)
    return pipe


def _no_oracle_inside(classes: list[str]) -> None:
    bad = [c for c in classes if c.endswith(".Attention") and c.startswith("diffusers")
           or c == "torch.nn.modules.activation.MultiheadAttention"]
    if bad:
        raise CheckFailed(f"your CrossAttention contains a `{bad[0]}`; this exercise asks you to "
                          "build it from nn.Linear layers and your own forward pass.")


# --------------------------------------------------------------------- ex1 CrossAttention

def make_attention_inputs(seed: int) -> dict:
    g = seeded(seed)
    # (query_dim, context_dim, head_dim, heads, B, N, T, self-attention?)
    cfg = [(8, 8, 3, 2, 2, 5, 7, False),      # same dims, real context: K/V from x would run
           (6, 10, 5, 3, 1, 9, 4, False),     # odd sizes, batch 1, 3 heads
           (12, 12, 4, 3, 2, 6, 6, True),     # self-attention (context None)
           (5, 7, 7, 1, 3, 1, 11, False),     # one query location, one head
           (16, 9, 2, 4, 1, 13, 3, False)][seed % 5]
    qd, cd, hd, h, b, n, t, self_attn = cfg
    return {"query_dim": qd, "context_dim": cd, "head_dim": hd, "heads": h,
            "x": torch.randn(b, n, qd, generator=g),
            "context": None if self_attn else torch.randn(b, t, cd, generator=g),
            "sharpen": 2.5, "_seed": seed}


def _oracle_attention(inputs: dict, state: dict) -> Attention:
    oracle = Attention(inputs["query_dim"], cross_attention_dim=inputs["context_dim"],
                       heads=inputs["heads"], dim_head=inputs["head_dim"])
    expected = set(oracle.state_dict())
    got = set(state)
    if got != expected:
        raise CheckFailed(
            "your CrossAttention's parameters are " + ", ".join(sorted(got)) + "; diffusers' Attention has "
            + ", ".join(sorted(expected)) + ". Use to_q, to_k, to_v (nn.Linear, bias=False) and "
            "to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim), nn.Dropout(0.0)]).")
    for k, v in oracle.state_dict().items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckFailed(f"`{k}` has shape {tuple(state[k].shape)}, diffusers' Attention expects "
                              f"{tuple(v.shape)} (query_dim={inputs['query_dim']}, context_dim="
                              f"{inputs['context_dim']}, heads={inputs['heads']}, head_dim={inputs['head_dim']}).")
    oracle.load_state_dict(state)
    return oracle.eval()


def _manual_attention(oracle: Attention, x, ctx, *, scale=None, softmax_dim=-1, kv_from_x=False,
                      split_wrong=False, merge_wrong=False):
    """Variants of multi-head attention with the oracle's weights (for naming mistakes)."""
    b, n, _ = x.shape
    ctx = x if (ctx is None or kv_from_x) else ctx
    t = ctx.shape[1]
    h = oracle.heads
    d = oracle.inner_dim // h
    scale = d ** -0.5 if scale is None else scale

    def split(y, length):
        if split_wrong:
            return y.reshape(b, h, length, d)
        return y.reshape(b, length, h, d).transpose(1, 2)

    q, k, v = split(oracle.to_q(x), n), split(oracle.to_k(ctx), t), split(oracle.to_v(ctx), t)
    w = (q @ k.transpose(-1, -2) * scale).softmax(dim=softmax_dim)
    o = w @ v
    o = o.reshape(b, n, h * d) if merge_wrong else o.transpose(1, 2).reshape(b, n, h * d)
    return oracle.to_out[0](o), w


def compare_attention_shapes(inputs: dict, r: dict) -> None:
    _no_oracle_inside(r["classes"])
    _oracle_attention(inputs, r["state"])
    x, ctx, h = inputs["x"], inputs["context"], inputs["heads"]
    b, n = x.shape[:2]
    t = n if ctx is None else ctx.shape[1]
    what = "self-attention (context=None)" if ctx is None else "cross-attention"
    expect_shape(r["out"], (b, n, inputs["query_dim"]), f"the output of {what}",
                 "One output vector per query location, in query_dim: [B, N, query_dim].")
    hint = ("The weights are [B, heads, N, T]: one row per image location, one column per "
            + ("location (self-attention)." if ctx is None else
               "TEXT token: K and V come from the context, not from x."))
    expect_shape(r["weights"], (b, h, n, t), f"the attention weights of {what}", hint)
    sums = r["weights"].detach().double().sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise CheckFailed(f"the attention weights of {what} do not sum to 1 over the tokens (the last "
                          f"axis; sums range from {sums.min():.3g} to {sums.max():.3g}): softmax over "
                          "the LAST axis, so every image location distributes its attention over the tokens.")


def compare_attention_values(inputs: dict, r: dict) -> None:
    _no_oracle_inside(r["classes"])
    oracle = _oracle_attention(inputs, r["state"])
    x, ctx = inputs["x"], inputs["context"]
    h, d = inputs["heads"], inputs["head_dim"]
    what = "self-attention (context=None)" if ctx is None else "cross-attention"
    with torch.no_grad():
        expected = oracle(x, ctx)
        q = oracle.head_to_batch_dim(oracle.to_q(x))
        k = oracle.head_to_batch_dim(oracle.to_k(x if ctx is None else ctx))
        probs = oracle.get_attention_scores(q, k).reshape(x.shape[0], h, x.shape[1], -1)
        variants = {
            **({"kv_from_x": dict(kv_from_x=True)} if inputs["query_dim"] == inputs["context_dim"] else {}),
            "no_scale": dict(scale=1.0),
            "inner_scale": dict(scale=(h * d) ** -0.5),
            "softmax_queries": dict(softmax_dim=-2),
            "split_wrong": dict(split_wrong=True, merge_wrong=True),
            "merge_wrong": dict(merge_wrong=True),
        }
        outs = {k_: _manual_attention(oracle, x, ctx, **kw) for k_, kw in variants.items()}
    messages = {
        "kv_from_x": "K and V must come from the context (the text), not from x: cross-attention is the "
                     "same formula as self-attention with a different source for K and V.",
        "no_scale": "the scores are not divided by sqrt(head_dim): softmax(Q K^T / sqrt(d)) keeps the "
                    "softmax from saturating as d grows.",
        "inner_scale": "you divided by sqrt(heads * head_dim); each head divides by sqrt(head_dim), its own "
                       "dimension.",
        "softmax_queries": "the softmax runs over the image locations (axis -2); it must run over the "
                           "tokens (the last axis), so each location's weights sum to 1.",
        "split_wrong": "the heads are split wrongly: reshape [B, N, heads * d] to [B, N, heads, d] and then "
                       "transpose to [B, heads, N, d] (a direct reshape to [B, heads, N, d] mixes locations "
                       "and heads).",
        "merge_wrong": "the heads are merged wrongly: transpose [B, heads, N, d] back to [B, N, heads, d] "
                       "before reshaping to [B, N, heads * d].",
    }
    for key, out in (("out", r["out"]), ("out_w", r["out_w"])):
        expect_close(out, expected, f"the output of {what}", atol=1e-4, rtol=1e-4,
                     suspects=[Suspect(n_, o[0], messages[n_]) for n_, o in outs.items()
                               if o[0].shape == expected.shape],
                     context=(f"(query_dim={inputs['query_dim']}, context_dim={inputs['context_dim']}, "
                              f"heads={h}, head_dim={d})" + ("" if key == "out" else " with return_weights=True")))
    expect_close(r["weights"], probs, f"the attention weights of {what}", atol=1e-4, rtol=1e-4,
                 suspects=[Suspect(n_, o[1], messages[n_]) for n_, o in outs.items()
                           if o[1].shape == probs.shape])


# --------------------------------------------------------------------- ex2a AttentionRecorder

def make_recorder_inputs(seed: int) -> dict:
    g = seeded(seed)
    prompts, steps, w = [
        (["a green star at the top left"], 3, 7.5),
        (["a purple square", "an orange triangle on the right"], 2, 4.0),
        (["two yellow circles"], 2, 1.0),          # w = 1: the pipeline makes no uncond pass
    ][seed % 3]
    return {"prompts": prompts, "steps": steps, "w": w,
            "latents": torch.randn(len(prompts), 4, 8, 8, generator=g)}


class _RefRecorder:
    """The reference recording processor (trusted side), with variants that make known
    mistakes so a student's output can be matched to one."""

    def __init__(self, variant: str | None = None):
        self.maps, self.variant = [], variant

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        v = self.variant
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is not None and attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        is_cross = encoder_hidden_states is not None
        context = hidden_states if (not is_cross or v == "kv_from_x") else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        if v == "no_scale":
            probs = (query @ key.transpose(-1, -2)).softmax(dim=-1)
        elif v == "softmax_queries":
            probs = (attn.scale * query @ key.transpose(-1, -2)).softmax(dim=1)
        else:
            probs = attn.get_attention_scores(query, key, attention_mask)
        if is_cross:
            self.maps.append(probs.detach().reshape(-1, attn.heads, *probs.shape[1:]).clone())
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        if v != "no_out":
            hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _reference_run(inputs: dict, variant: str | None = None, default: bool = False):
    pipe = _oracle_pipe()
    rec = _RefRecorder(variant)
    if not default:
        pipe.unet.set_attn_processor(rec)
        pipe.vae.set_attn_processor(_RefRecorder(variant))
    try:
        with torch.no_grad():
            image = pipe(inputs["prompts"], latents=inputs["latents"].clone(),
                         num_inference_steps=inputs["steps"], guidance_scale=inputs["w"],
                         output_type="pt").images
    finally:
        pipe.unet.set_attn_processor(dict(_ORACLE["procs"]))
        pipe.vae.set_attn_processor(dict(_ORACLE["vae_procs"]))
    return image, rec.maps


_RECORDER_MESSAGES = {
    "kv_from_x": "your processor takes K and V from hidden_states even in cross-attention: when "
                 "encoder_hidden_states is given, K and V come from it (the text).",
    "no_scale": "your scores are not scaled by attn.scale = 1/sqrt(head_dim) (attn.get_attention_scores "
                "does it for you).",
    "softmax_queries": "your softmax runs over the image locations; it must run over the tokens "
                       "(the last axis), as attn.get_attention_scores does.",
    "no_out": "you skipped the output projection attn.to_out[0] (then attn.to_out[1], dropout).",
}


@_one_thread
def compare_recorder_output(inputs: dict, r: dict) -> None:
    expected, _ = _reference_run(inputs, default=True)
    atol = 5e-4
    if isinstance(r["image"], torch.Tensor) and r["image"].shape == expected.shape and \
            float((r["image"] - expected).abs().max()) <= atol:
        return
    suspects = [Suspect(name, _reference_run(inputs, name)[0], msg) for name, msg in _RECORDER_MESSAGES.items()]
    expect_close(r["image"], expected, "the pipeline's image with your processor in the U-Net and the VAE",
                 atol=atol, rtol=0, suspects=suspects,
                 context=f"(prompts {inputs['prompts']}, {inputs['steps']} steps, guidance {inputs['w']:g})",
                 hint="Your processor must compute exactly what the default one computes: project Q from "
                      "hidden_states and K, V from encoder_hidden_states (or from hidden_states for "
                      "self-attention), split the heads, scaled softmax over the tokens, weighted sum of V, "
                      "merge the heads, attn.to_out[0] then attn.to_out[1].")


@_one_thread
def compare_recorder_weights(inputs: dict, r: dict) -> None:
    _, ref = _reference_run(inputs)
    maps = r["maps"]
    n_ref = len(ref)
    if any(not isinstance(m, torch.Tensor) for m in maps):
        raise CheckFailed("self.maps must hold tensors only (one [B, heads, N, T] tensor per "
                          "cross-attention call).")
    n_self = 2 * n_ref
    if len(maps) == n_self or (len(maps) > n_ref and any(m.shape[-1] != ref[0].shape[-1] for m in maps)):
        raise CheckFailed(f"you recorded {len(maps)} maps in a run that makes {n_ref} cross-attention calls: "
                          "record only cross-attention, when encoder_hidden_states is not None (self-attention "
                          "calls have encoder_hidden_states=None).")
    if len(maps) != n_ref:
        raise CheckFailed(f"you recorded {len(maps)} maps; this run makes {n_ref} cross-attention calls "
                          f"({inputs['steps']} steps x {n_ref // inputs['steps']} cross-attention layers). "
                          "Append one tensor per cross-attention call, in call order.")
    if r["vae_maps"]:
        raise CheckFailed("your processor recorded maps inside the VAE, whose attention is self-attention "
                          "(encoder_hidden_states=None): record only cross-attention.")
    no_scale = []
    for i, (m, e) in enumerate(zip(maps, ref)):
        b, h, n, t = e.shape
        expect_shape(m, (b, h, n, t), f"recorded map {i}",
                     "Each map is [B, heads, N, T]: reshape the [B*heads, N, T] probabilities with "
                     "reshape(-1, attn.heads, N, T) (batch index outer, head index inner).")
        sums = m.detach().double().sum(-1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            raise CheckFailed(f"recorded map {i} does not sum to 1 over the tokens (the last axis; sums "
                              f"from {sums.min():.3g} to {sums.max():.3g}): record the softmax "
                              "probabilities, softmax over the tokens.")
        if torch.allclose(m.double(), e.double(), atol=1e-4, rtol=1e-4):
            continue
        if not no_scale:
            no_scale.extend(_reference_run(inputs, "no_scale")[1])
        suspects = [Suspect("no_scale", no_scale[i], _RECORDER_MESSAGES["no_scale"])]
        if h > 1 and b > 1:
            suspects.append(Suspect(
                "heads_outer", e.reshape(b * h, n, t).reshape(h, b, n, t).transpose(0, 1),
                "the probabilities are [B*heads, N, T] with the batch index OUTER (sample 0's heads "
                "come first): reshape(-1, attn.heads, N, T), not reshape(attn.heads, -1, N, T)."))
        expect_close(m, e, f"recorded map {i} ({n} locations x {t} tokens)", atol=1e-4, rtol=1e-4,
                     suspects=suspects,
                     hint="Record exactly the probabilities the layer uses (attn.get_attention_scores).")


# --------------------------------------------------------------------- ex2b token_maps

def make_token_map_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, h, t, sides, size = [(1, 2, 5, (8, 4, 8), 12), (2, 1, 7, (4, 2), 9), (3, 3, 4, (6,), 6),
                            (1, 4, 3, (8, 8, 4, 4, 2), 16)][seed % 4]
    maps = [(torch.randn(b, h, s * s, t, generator=g) * 2).softmax(-1) for s in sides]
    return {"maps": maps, "size": size}


def _ref_token_maps(maps, size, *, mode="bilinear", layout_ok=True, swap_hw=False, mean=True,
                    head_mean=True):
    total = 0
    for m in maps:
        b, h, n, t = m.shape
        side = math.isqrt(n)
        avg = m.mean(1) if head_mean else m.sum(1)
        grid = avg.transpose(1, 2).reshape(b, t, side, side) if layout_ok else avg.reshape(b, t, side, side)
        if swap_hw:
            grid = grid.transpose(-1, -2)
        kw = {"align_corners": False} if mode == "bilinear" else {}
        total = total + F.interpolate(grid, size=(size, size), mode=mode, **kw)
    return total / len(maps) if mean else total


def compare_token_maps(inputs: dict, out) -> None:
    maps, size = inputs["maps"], inputs["size"]
    expected = _ref_token_maps(maps, size)
    suspects = [
        Suspect("nearest", _ref_token_maps(maps, size, mode="nearest"),
                "you upsampled with nearest neighbours; use bilinear interpolation "
                "(F.interpolate(..., mode='bilinear', align_corners=False))."),
        Suspect("layout", _ref_token_maps(maps, size, layout_ok=False),
                "the token axis is mixed into the grid: [B, N, T] must become [B, T, N] (transpose) "
                "before reshaping N into h x w."),
        Suspect("swap_hw", _ref_token_maps(maps, size, swap_hw=True),
                "your maps are transposed (rows and columns swapped): N runs row by row, so location n "
                "is row n // w, column n % w."),
        Suspect("sum", _ref_token_maps(maps, size, mean=False),
                "you summed the maps instead of averaging them: divide by the number of maps."),
        Suspect("head_sum", _ref_token_maps(maps, size, head_mean=False),
                "you summed over the heads instead of averaging them."),
    ]
    b, _, _, t = maps[0].shape
    expect_close(out, expected, f"token_maps({len(maps)} maps, size={size})", atol=1e-5, rtol=1e-4,
                 suspects=suspects, context=f"for maps of {[tuple(m.shape) for m in maps]}",
                 hint="Average over heads, then for each map: [B, N, T] -> [B, T, h, w] (row-major), "
                      "bilinear upsampling to size x size, then the mean over all maps. Shape "
                      f"[B, T, size, size] = {(b, t, size, size)}.")


# --------------------------------------------------------------------- ex3a by hand

def make_hand_inputs(seed: int) -> dict:
    return {}


def compare_hand(inputs: dict, typed) -> None:
    if not isinstance(typed, (list, tuple)) or len(typed) != 3 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in typed):
        raise CheckFailed(f"cfg_by_hand() must return a list of three numbers, got {typed!r}")
    u, c, w = torch.tensor(EPS_UNCOND, dtype=torch.float64), torch.tensor(EPS_COND, dtype=torch.float64), HAND_W
    right = u + w * (c - u)
    wrong = {
        "from_cond": (c + w * (c - u), "you extrapolated from the conditional prediction, eps_cond + w (eps_cond - "
                      "eps_uncond); the formula starts from the UNconditional one: eps_uncond + w (eps_cond - "
                      "eps_uncond)."),
        "w_times_cond": (w * c, "you multiplied the conditional prediction by w; guidance scales the "
                         "DIFFERENCE eps_cond - eps_uncond, added to eps_uncond."),
        "reversed": (u + w * (u - c), "your text direction points the wrong way: it is eps_cond - eps_uncond "
                     "(from unconditional towards conditional)."),
        "no_uncond": (w * (c - u), "you forgot to add eps_uncond: the guided prediction is eps_uncond + "
                      "w (eps_cond - eps_uncond)."),
    }
    for i in range(3):
        if abs(typed[i] - right[i].item()) <= 0.011:
            continue
        for value, msg in wrong.values():
            if abs(typed[i] - value[i].item()) <= 0.011:
                raise CheckFailed(f"coordinate {i} of your hand computation is {typed[i]:g}: {msg}")
        raise CheckFailed(f"coordinate {i} of your hand computation is {typed[i]:g}, which is not "
                          f"eps_uncond + {w} (eps_cond - eps_uncond) to two decimals: recheck the "
                          "subtraction, then the multiplication, then the addition.")


# --------------------------------------------------------------------- ex3b the formula

def make_cfg_inputs(seed: int) -> dict:
    g = seeded(seed)
    shape = [(1, 4, 8, 8), (3, 4, 5, 7), (2, 16), (1, 4, 64, 64), (5,)][seed % 5]
    w = [7.5, 3.0, 20.0, 0.5, 0.0, 1.0, 11.25][seed % 7]
    return {"uncond": torch.randn(*shape, generator=g), "cond": torch.randn(*shape, generator=g), "w": w}


def compare_cfg(inputs: dict, out) -> None:
    u, c, w = inputs["uncond"], inputs["cond"], inputs["w"]
    expected = u + w * (c - u)
    suspects = [
        Suspect("from_cond", c + w * (c - u),
                "you extrapolated from eps_cond: cond + w (cond - uncond). The formula starts from the "
                "unconditional prediction: uncond + w (cond - uncond)."),
        Suspect("w_times_cond", w * c,
                "w * cond only rescales the conditional prediction; guidance scales the difference "
                "(cond - uncond) and adds it to uncond."),
        Suspect("reversed", u + w * (u - c),
                "your text direction is reversed: it is (cond - uncond)."),
        Suspect("no_uncond", w * (c - u), "you forgot to add uncond."),
    ]
    expect_close(out, expected, "classifier_free_guidance", atol=1e-5, rtol=1e-5,
                 suspects=[s for s in suspects if s.output.shape == expected.shape
                           and not torch.allclose(s.output, expected, atol=1e-5)],
                 context=f"for tensors {tuple(u.shape)} and guidance_scale={w:g}")


# --------------------------------------------------------------------- ex4 the loop

def make_sample_inputs(seed: int) -> dict:
    g = seeded(seed)
    long = ("a large red circle at the top left and a small blue square at the bottom right "
            "and a green star in the centre and a yellow triangle on the left")
    prompts, w, steps, sched, neg, as_string = [
        (["a blue star"], 7.5, 4, "euler", None, True),
        (["a red circle", "an orange square at the bottom"], 3.0, 3, "ddim", "a red square", False),
        ([long], 5.0, 3, "ddim", None, True),
        (["a green triangle", "two purple stars"], 1.0, 3, "euler", None, False),
    ][seed % 4]
    return {"prompts": prompts, "w": w, "steps": steps, "scheduler": sched, "negative": neg,
            "as_string": as_string, "latents": torch.randn(len(prompts), 4, 8, 8, generator=g)}


def _embed(pipe, texts):
    ids = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def _reference_loop(pipe, inputs: dict, variant: str) -> torch.Tensor:
    """Known-wrong versions of the loop (trusted side), to name a student's mistake."""
    prompts, b = list(inputs["prompts"]), len(inputs["prompts"])
    cond = _embed(pipe, prompts)
    uncond = _embed(pipe, [inputs["negative"] or ""] * b)
    if variant == "zero_uncond":
        uncond = torch.zeros_like(cond)
    if variant == "ignore_negative":
        uncond = _embed(pipe, [""] * b)
    sch = pipe.scheduler
    sch.set_timesteps(inputs["steps"])
    lat = inputs["latents"].clone()
    if variant != "no_init_sigma":
        lat = lat * sch.init_noise_sigma
    ctx = torch.cat([uncond, cond])
    with torch.no_grad():
        for t in sch.timesteps:
            x = torch.cat([lat] * 2)
            if variant != "no_scale_input":
                x = sch.scale_model_input(x, t)
            eps_u, eps_c = pipe.unet(x, t, encoder_hidden_states=ctx).sample.chunk(2)
            if variant == "swapped_halves":
                eps_u, eps_c = eps_c, eps_u
            eps = eps_u + inputs["w"] * (eps_c - eps_u)
            lat = sch.step(eps, t, lat).prev_sample
        z = lat if variant == "no_scaling_factor" else lat / pipe.vae.config.scaling_factor
        if variant == "times_scaling_factor":
            z = lat * pipe.vae.config.scaling_factor
        img = pipe.vae.decode(z).sample
    return img.clamp(0, 1) if variant == "no_denormalise" else (img / 2 + 0.5).clamp(0, 1)


_LOOP_MESSAGES = {
    "no_init_sigma": "the starting latents are not multiplied by pipe.scheduler.init_noise_sigma (1 for DDIM, "
                     "but not for every scheduler: this check uses EulerDiscreteScheduler).",
    "no_scale_input": "the U-Net input is not passed through pipe.scheduler.scale_model_input(x, t) (a no-op "
                      "for DDIM, but not for every scheduler: this check uses EulerDiscreteScheduler).",
    "no_scaling_factor": "you decoded the latents without dividing by pipe.vae.config.scaling_factor: the "
                         "U-Net works on latents multiplied by it, the VAE decoder expects them unscaled.",
    "times_scaling_factor": "you multiplied by pipe.vae.config.scaling_factor before decoding; divide by it.",
    "no_denormalise": "the VAE decodes to [-1, 1]: map to [0, 1] with image / 2 + 0.5, then clamp.",
    "swapped_halves": "the two halves of the U-Net output are swapped: with the batch [uncond, cond], "
                      "chunk(2) gives (eps_uncond, eps_cond) in that order.",
    "ignore_negative": "you ignored negative_prompt: the unconditional half of the batch encodes "
                       "negative_prompt (\"\" by default) instead of always \"\".",
    "zero_uncond": "the unconditional half is a tensor of zeros; it must be the text encoder's embedding of "
                   "the empty prompt (what the model saw during caption dropout).",
}


@_one_thread
def compare_sample_contract(inputs: dict, r: dict) -> None:
    """How the loop calls the U-Net (one call per step on [uncond, cond]) and the output's form."""
    steps, b = inputs["steps"], len(inputs["prompts"])
    batches = r["batches"]
    if not batches:
        raise CheckFailed("the grader saw no U-Net call: call the U-Net as pipe.unet(x, t, "
                          "encoder_hidden_states=...), once per denoising step.")
    if len(batches) == 2 * steps and all(v == b for v in batches):
        raise CheckFailed(f"you called the U-Net twice per step ({len(batches)} calls of batch {b} for {steps} "
                          "steps): classifier-free guidance uses ONE model, and the unconditional and "
                          "conditional predictions come from one call on the batch [uncond, cond] (2B samples).")
    if len(batches) != steps:
        raise CheckFailed(f"expected one U-Net call per denoising step ({steps}), saw {len(batches)}.")
    if any(v != 2 * b for v in batches):
        raise CheckFailed(f"the U-Net batches were {batches}; each call takes the batch [uncond, cond] of "
                          f"2 x {b} = {2 * b} samples.")
    pipe = _oracle_pipe(inputs["scheduler"])
    cond = _embed(pipe, list(inputs["prompts"]))
    uncond = _embed(pipe, [inputs["negative"] or ""] * b)
    ctx = r["context"]
    expect_shape(ctx, (2 * b, *cond.shape[1:]), "encoder_hidden_states of your first U-Net call")
    close = lambda a, e: bool(torch.allclose(a.double(), e.double(), atol=1e-4))  # noqa: E731
    if not close(ctx[:b], uncond) or not close(ctx[b:], cond):
        if close(ctx[:b], cond) and close(ctx[b:], uncond):
            raise CheckFailed("your batch is [cond, uncond]; the convention (diffusers' pipeline) is "
                              "[uncond, cond]: the unconditional embeddings first, then the prompt's.")
        if bool((ctx[:b] == 0).all()):
            raise CheckFailed(_LOOP_MESSAGES["zero_uncond"])
        if inputs["negative"] and close(ctx[:b], _embed(pipe, [""] * b)):
            raise CheckFailed(_LOOP_MESSAGES["ignore_negative"])
        raise CheckFailed("encoder_hidden_states is not [embeddings of the unconditional prompt, embeddings "
                          "of the prompt]: tokenize with padding='max_length', max_length="
                          "tokenizer.model_max_length, truncation=True, and take the text encoder's "
                          "last hidden state (output [0]).")
    img = r["image"]
    h = inputs["latents"].shape[-1] * pipe.vae_scale_factor
    expect_shape(img, (b, 3, h, h), "your images", "Return [B, 3, H, W]: one RGB image per prompt.")
    if not bool(torch.isfinite(img).all()) or float(img.min()) < 0 or float(img.max()) > 1:
        raise CheckFailed("your images must lie in [0, 1]: the VAE decodes to [-1, 1]; return "
                          "(image / 2 + 0.5).clamp(0, 1).")


@_one_thread
def compare_sample(inputs: dict, r: dict) -> None:
    """The contract, then the image against the pipeline's own output."""
    compare_sample_contract(inputs, r)
    steps, b = inputs["steps"], len(inputs["prompts"])
    pipe = _oracle_pipe(inputs["scheduler"])
    kwargs = {"negative_prompt": [inputs["negative"]] * b} if inputs["negative"] else {}
    with torch.no_grad():
        expected = pipe(list(inputs["prompts"]), latents=inputs["latents"].clone(),
                        num_inference_steps=steps, guidance_scale=inputs["w"], output_type="pt",
                        **kwargs).images
    img = r["image"]
    if isinstance(img, torch.Tensor) and img.shape == expected.shape and \
            float((img.double() - expected.double()).abs().max()) <= 1e-4:
        return
    suspects = []
    for name, msg in _LOOP_MESSAGES.items():
        if name in ("zero_uncond", "ignore_negative"):
            continue
        ref = _oracle_pipe(inputs["scheduler"])
        suspects.append(Suspect(name, _reference_loop(ref, inputs, name), msg))
    expect_close(img, expected, "your image", atol=1e-4, rtol=0, suspects=suspects,
                 context=(f"(prompts {inputs['prompts']}, guidance {inputs['w']:g}, {steps} steps, "
                          f"{inputs['scheduler']} scheduler)"),
                 hint="Compare your loop with the pipeline's steps: set_timesteps, init_noise_sigma, "
                      "scale_model_input, one U-Net call on [uncond, cond], guidance, scheduler.step, "
                      "decode latents / scaling_factor, then image / 2 + 0.5 clamped to [0, 1].")


CHECKS = Checks(
    Check("cross_attention_shapes", make_attention_inputs, run_attention, compare_attention_shapes,
          seeds=range(5), forbid=ATTENTION_ORACLES),
    Check("cross_attention_values", make_attention_inputs, run_attention, compare_attention_values,
          seeds=range(10, 15), forbid=ATTENTION_ORACLES),
    Check("recorder_output", make_recorder_inputs, run_recorder, compare_recorder_output,
          seeds=range(2), forbid=PROCESSOR_ORACLES),
    Check("recorder_weights", make_recorder_inputs, run_recorder, compare_recorder_weights,
          seeds=range(1, 3), forbid=PROCESSOR_ORACLES),
    Check("token_maps", make_token_map_inputs, run_token_maps, compare_token_maps, seeds=range(4),
          forbid=INTERPOLATE_ORACLES),
    Check("cfg_by_hand", make_hand_inputs, run_hand, compare_hand, seeds=(0,)),
    Check("cfg_formula", make_cfg_inputs, run_cfg, compare_cfg, seeds=range(7)),
    Check("sample_with_cfg_contract", make_sample_inputs, run_sample, compare_sample_contract,
          seeds=(1, 2), forbid=PIPELINE_ORACLES),
    Check("sample_with_cfg", make_sample_inputs, run_sample, compare_sample, seeds=range(4),
          forbid=PIPELINE_ORACLES),
    module=__name__,
)
#: What a hidden test line calls: ``hidden.check("<name>", <student objects>)``.
check = CHECKS
