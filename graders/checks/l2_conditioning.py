"""Hidden checks for 6-3-2 "Conditioning the U-Net" (instructor-only).

Oracles: diffusers ``get_timestep_embedding(..., flip_sin_to_cos=True,
downscale_freq_shift=0)``, diffusers ``TimestepEmbedding``, ``AdaGroupNorm`` and
``ResnetBlockCondNorm2D(time_embedding_norm="ada_group")`` with the student's weights copied in,
``torch.nn.functional.group_norm`` / ``cosine_similarity``. ``group_norm`` runs with every
library normalisation disabled (group, layer, instance and batch norm: each can compute it in
one reshaped call). ``ConditionedResBlock`` is built with a reference ``AdaGroupNorm`` in place
of the student's (exercise 3 is graded on its own). Every check is make-inputs / run (sandbox
side, ``run_*``) / compare (see ``common``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, get_timestep_embedding
from diffusers.models.normalization import AdaGroupNorm as DiffusersAdaGroupNorm
from diffusers.models.resnet import ResnetBlockCondNorm2D

from .common import (Check, CheckFailed, Checks, Suspect, expect_close, expect_dtype,
                     expect_shape, seeded)
from .runtime import module_facts

TIMESTEP_ORACLES = ["diffusers.models.embeddings.get_timestep_embedding",
                    "diffusers.models.embeddings.Timesteps"]
#: Every library normalisation computes group norm in one call on a reshaped tensor
#: (F.layer_norm over [B, G, n], F.instance_norm / F.batch_norm on [1, B*G, n]): all forbidden.
GN_ORACLES = [f"{m}.{n}" for m in ("torch.nn.functional", "torch")
              for n in ("group_norm", "layer_norm", "instance_norm", "batch_norm")] + \
             [f"torch.nn.{n}" for n in ("GroupNorm", "LayerNorm", "InstanceNorm1d", "InstanceNorm2d",
                                         "InstanceNorm3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d")]


# --------------------------------------------------------------------- ex1 timestep embedding

def make_timestep_inputs(seed: int) -> dict:
    g = seeded(seed)
    n = [1, 7, 5][seed % 3]
    dim = [6, 10, 34, 100][seed % 4]
    max_period = [10000, 1000, 10000, 50][seed % 4]
    if seed % 2:
        t = torch.randint(0, 1000, (n,), generator=g)              # integer steps
    else:
        t = torch.rand(n, generator=g, dtype=torch.float64) * 999   # fractional steps
    return {"t": t, "dim": dim, "max_period": max_period}


def run_timestep(inputs: dict, student):
    return student(inputs["t"].clone(), inputs["dim"], max_period=inputs["max_period"])


def _sinusoid(t, dim, max_period, *, divisor_shift=0.0, cos_first=True):
    return get_timestep_embedding(t, dim, flip_sin_to_cos=cos_first,
                                  downscale_freq_shift=divisor_shift, max_period=max_period)


def compare_timestep_shape(inputs: dict, out) -> None:
    n, dim = len(inputs["t"]), inputs["dim"]
    expect_shape(out, (n, dim), f"timestep_embedding(t of shape ({n},), dim={dim})",
                 "One row per timestep, `dim` columns: dim/2 cosines then dim/2 sines.")
    expect_dtype(out, torch.float32, "the embedding")


def compare_timestep_values(inputs: dict, out) -> None:
    t, dim, mp = inputs["t"], inputs["dim"], inputs["max_period"]
    half = dim // 2
    expected = _sinusoid(t, dim, mp)
    interleaved = torch.stack([expected[:, :half], expected[:, half:]], dim=-1).reshape(-1, dim)
    suspects = [
        Suspect("sin_first", _sinusoid(t, dim, mp, cos_first=False),
                "you put the sines first. SD's convention (diffusers flip_sin_to_cos=True) "
                "is cos for the first half, sin for the second."),
        Suspect("half_minus_1", _sinusoid(t, dim, mp, divisor_shift=1),
                "your frequencies divide by (half - 1); SD uses exp(-ln(max_period) * i / half) "
                "(downscale_freq_shift=0)."),
        Suspect("interleaved", interleaved,
                "you interleaved cos and sin (cos, sin, cos, sin, ...); SD concatenates: all "
                "cosines, then all sines."),
        Suspect("fixed_max_period", _sinusoid(t, dim, 10000),
                "your frequencies ignore the `max_period` argument (10000 is only the default)."),
        Suspect("rising_frequencies", _sinusoid(t, dim, 1.0 / mp),
                "your frequencies increase with i; they must DEcrease: exp(-ln(max_period)*i/half)."),
    ]
    expect_close(out, expected, "the embedding", atol=2e-5, rtol=1e-5, suspects=suspects,
                 context=f"for dim={dim}, max_period={mp}")


# --------------------------------------------------------------------- ex2b timestep MLP

def make_mlp_inputs(seed: int) -> dict:
    g = seeded(seed)
    in_dim, hidden = [(6, 10), (10, 24), (34, 20)][seed % 3]
    n = [1, 5, 3][seed % 3]
    return {"in_dim": in_dim, "hidden_dim": hidden, "x": torch.randn(n, in_dim, generator=g),
            "_seed": seed}


def run_mlp(inputs: dict, cls):
    torch.manual_seed(inputs["_seed"])
    mlp = cls(inputs["in_dim"], inputs["hidden_dim"])
    facts = module_facts(mlp, ("linear_1", "linear_2"))
    with torch.no_grad():
        facts["out"] = mlp(inputs["x"].clone())
    return facts


def _no_oracle_inside(result: dict, oracle: type) -> None:
    """A student's module must not simply contain the library class it re-implements."""
    name = f"{oracle.__module__}.{oracle.__qualname__}"
    if name in result["classes"]:
        raise CheckFailed(f"your module contains a `{name}`; this exercise asks you to build it "
                          "from nn.Linear and your own forward pass.")


def _linear(result: dict, cls_name: str, name: str, fan_in: int, fan_out: int) -> None:
    shape = result["linears"].get(name)
    if shape is None:
        raise CheckFailed(f"{cls_name} needs an attribute `{name}` that is an nn.Linear "
                          f"(the names follow diffusers).")
    if tuple(shape) != (fan_in, fan_out):
        raise CheckFailed(f"`{name}` maps {shape[0]} -> {shape[1]}, expected {fan_in} -> {fan_out}.")


def compare_mlp_structure(inputs: dict, result: dict) -> None:
    i, h = inputs["in_dim"], inputs["hidden_dim"]
    _no_oracle_inside(result, TimestepEmbedding)
    _linear(result, "TimestepMLP", "linear_1", i, h)
    _linear(result, "TimestepMLP", "linear_2", h, h)
    extra = sorted(set(result["state"]) - {"linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"})
    if extra:
        raise CheckFailed(f"TimestepMLP has parameters beyond its two Linear layers ({', '.join(extra)}): "
                          "it is exactly Linear -> SiLU -> Linear.")
    expect_shape(result["out"], (len(inputs["x"]), h), f"TimestepMLP({i}, {h}) output",
                 "The MLP maps in_dim -> hidden_dim -> hidden_dim.")


def compare_mlp_values(inputs: dict, result: dict) -> None:
    compare_mlp_structure(inputs, result)
    oracle = TimestepEmbedding(inputs["in_dim"], inputs["hidden_dim"], act_fn="silu")
    oracle.load_state_dict({k: v for k, v in result["state"].items()
                            if k.split(".")[0] in ("linear_1", "linear_2")})
    x = inputs["x"]
    with torch.no_grad():
        expected = oracle(x)
        h = oracle.linear_1(x)
        suspects = [
            Suspect("relu", oracle.linear_2(F.relu(h)),
                    "you used ReLU; the timestep MLP in SD uses SiLU (x * sigmoid(x))."),
            Suspect("no_activation", oracle.linear_2(h),
                    "there is no nonlinearity between the two Linear layers, so the MLP "
                    "collapses to one linear map and cannot reshape the embedding."),
            Suspect("extra_activation", F.silu(expected),
                    "you applied SiLU after the last Linear too; SD applies it only between "
                    "the layers (each ResNet block applies its own SiLU before projecting)."),
        ]
    expect_close(result["out"], expected, "TimestepMLP output", atol=1e-5, suspects=suspects)


# --------------------------------------------------------------------- ex2a neighbour similarity

def make_similarity_inputs(seed: int) -> dict:
    g = seeded(seed)
    n, d = [(2, 5), (9, 16), (30, 7)][seed % 3]
    emb = torch.randn(n, d, generator=g) * (1 + 3 * torch.rand(n, 1, generator=g))
    return {"emb": emb}


def compare_similarity(inputs: dict, out) -> None:
    emb = inputs["emb"]
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (len(emb),):
        raise CheckFailed(f"neighbour_similarity of {len(emb)} rows returned {len(emb)} values: "
                          f"N rows have N - 1 neighbour pairs (row k with row k + 1; no wrap-around "
                          "from the last row to the first).")
    expected = F.cosine_similarity(emb[1:], emb[:-1], dim=-1)
    suspects = [
        Suspect("dot", (emb[1:] * emb[:-1]).sum(-1),
                "you returned raw dot products; cosine similarity divides by both norms, so "
                "the answer lies in [-1, 1] whatever the embedding's scale."),
        Suspect("vs_first", F.cosine_similarity(emb[1:], emb[:1].expand_as(emb[1:]), dim=-1),
                "you compared every row with row 0; compare each row with the one before it "
                "(t and t+1)."),
    ]
    expect_close(out, expected, "neighbour_similarity(emb)", atol=1e-5, suspects=suspects,
                 context=f"for emb of shape {tuple(emb.shape)}")


def run_similarity(inputs: dict, neighbour_similarity):
    return neighbour_similarity(inputs["emb"].clone())


# --------------------------------------------------------------------- ex3 AdaGroupNorm

def make_adagn_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, c, groups, h, w, e = [(1, 6, 3, 5, 7, 10), (3, 12, 4, 4, 3, 6), (2, 10, 5, 9, 2, 34)][seed % 3]
    return {"x": torch.randn(b, c, h, w, generator=g) * 3 + 1,
            "emb": torch.randn(b, e, generator=g),
            "emb_dim": e, "num_channels": c, "num_groups": groups,
            "eps": [1e-5, 1e-6, 1e-3][seed % 3], "_seed": seed}


def run_adagn(inputs: dict, cls):
    torch.manual_seed(inputs["_seed"])
    norm = cls(inputs["emb_dim"], inputs["num_channels"], inputs["num_groups"],
               eps=inputs["eps"])
    with torch.no_grad():
        # Make scale and shift large enough that a swap or a missing "1 +" is visible.
        lin = getattr(norm, "linear", None)
        if isinstance(lin, torch.nn.Linear):
            lin.weight.mul_(3.0)
            lin.bias.normal_(generator=seeded(inputs["_seed"] + 1))
        facts = module_facts(norm, ("linear",))
        facts["out"] = norm(inputs["x"].clone(), inputs["emb"].clone())
    return facts


def compare_adagn_shape(inputs: dict, result: dict) -> None:
    c, e = inputs["num_channels"], inputs["emb_dim"]
    _no_oracle_inside(result, DiffusersAdaGroupNorm)
    lin = result["linears"]["linear"]
    if lin is None or tuple(lin) != (e, 2 * c):
        raise CheckFailed(f"AdaGroupNorm({e}, {c}, ...) needs `self.linear = nn.Linear({e}, "
                          f"{2 * c})`: ONE projection producing scale and shift for every channel.")
    expect_shape(result["out"], tuple(inputs["x"].shape), "AdaGroupNorm output",
                 "Normalisation and modulation keep the shape [B, C, H, W].")


def compare_adagn_values(inputs: dict, result: dict) -> None:
    compare_adagn_shape(inputs, result)
    x, emb, c, groups, eps = (inputs[k] for k in ("x", "emb", "num_channels", "num_groups", "eps"))
    oracle = DiffusersAdaGroupNorm(inputs["emb_dim"], c, groups, act_fn=None, eps=eps)
    oracle.linear.load_state_dict({k.split(".", 1)[1]: v for k, v in result["state"].items()
                                   if k.startswith("linear.")})
    with torch.no_grad():
        expected = oracle(x, emb)
        scale, shift = oracle.linear(emb)[:, :, None, None].chunk(2, dim=1)
        normed = F.group_norm(x, groups, eps=eps)
        suspects = [
            Suspect("swapped", normed * (1 + shift) + scale,
                    "scale and shift are swapped: the first half of linear(emb) is the scale, "
                    "the second half the shift (diffusers' chunk order)."),
            Suspect("no_one_plus", normed * scale + shift,
                    "you multiplied by `scale` instead of `(1 + scale)`; the `1 +` makes a "
                    "zero projection leave the normalised features unchanged."),
            Suspect("modulate_then_normalise", F.group_norm(x * (1 + scale) + shift, groups, eps=eps),
                    "you applied scale and shift BEFORE normalising; group norm then undoes "
                    "most of them. Normalise first, then modulate."),
            Suspect("layer_norm", F.group_norm(x, 1, eps=eps) * (1 + scale) + shift,
                    "you normalised over all channels at once (layer norm); use `num_groups` "
                    "groups."),
            Suspect("per_channel", F.group_norm(x, c, eps=eps) * (1 + scale) + shift,
                    "you normalised each channel separately (instance norm); use `num_groups` "
                    "groups."),
        ]
    expect_close(result["out"], expected, "AdaGroupNorm output", atol=1e-4, rtol=1e-4,
                 suspects=suspects, context=f"for x {tuple(x.shape)}, {groups} groups")


# --------------------------------------------------------------------- ex4 group norm by hand

def make_gn_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, c, groups, h, w = [(1, 6, 2, 3, 5), (4, 12, 3, 2, 2), (2, 15, 5, 7, 1), (3, 8, 4, 5, 5)][seed % 4]
    # Channels with very different means and scales: every wrong axis gives a different answer.
    x = (torch.randn(b, c, h, w, generator=g) * torch.linspace(0.5, 4.0, c)[None, :, None, None]
         + torch.linspace(-3, 3, c)[None, :, None, None]
         + torch.randn(b, 1, 1, 1, generator=g) * 2)
    return {"x": x, "num_groups": groups, "eps": [1e-5, 1e-2, 1e-5, 1e-1][seed % 4]}


def run_gn(inputs: dict, student):
    return student(inputs["x"].clone(), inputs["num_groups"], eps=inputs["eps"])


def _norm(x, dims, eps, unbiased=False):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    return (x - mean) / torch.sqrt(var + eps)


def compare_gn_shape(inputs: dict, out) -> None:
    """Shape, dtype, and the property the visible test shows: every (example, group) has mean 0
    and (biased) variance 1 (up to eps)."""
    x, groups = inputs["x"], inputs["num_groups"]
    expect_shape(out, tuple(x.shape), "group_norm(x)",
                 "Normalisation never changes the shape: reshape back to [B, C, H, W].")
    expect_dtype(out, x.dtype, "group_norm(x)")
    g = out.double().reshape(x.shape[0], groups, -1)
    target = F.group_norm(x.double(), groups, eps=inputs["eps"]).reshape(x.shape[0], groups, -1)
    expect_close(g.mean(-1), target.mean(-1), "the mean of every (example, group)", atol=1e-4,
                 hint="Statistics are per example and per group of consecutive channels.")
    expect_close(g.var(-1, unbiased=False), target.var(-1, unbiased=False),
                 "the variance of every (example, group)", atol=1e-3,
                 hint="Use the biased variance: divide by n, not n-1 (unbiased=False).")


def compare_gn_values(inputs: dict, out) -> None:
    x, groups, eps = inputs["x"], inputs["num_groups"], inputs["eps"]
    b, c, h, w = x.shape
    expected = F.group_norm(x, groups, eps=eps)
    grouped = x.reshape(b, groups, -1)
    interleaved = x.reshape(b, c // groups, groups, h, w).transpose(1, 2).reshape(b, groups, -1)
    inter_norm = _norm(interleaved, (2,), eps).reshape(b, groups, c // groups, h, w)
    suspects = [
        Suspect("batch_norm", _norm(x, (0, 2, 3), eps),
                "you normalised each channel over the batch (batch-norm axes). Group norm "
                "works per example: over the channels of one group and all H, W."),
        Suspect("layer_norm", _norm(x, (1, 2, 3), eps),
                "you normalised over all channels of an example at once (layer-norm axes); "
                "split the C channels into num_groups groups first."),
        Suspect("instance_norm", _norm(x, (2, 3), eps),
                "you normalised every channel on its own (instance-norm axes); each group of "
                "C/num_groups channels shares one mean and variance."),
        Suspect("unbiased", _norm(grouped, (2,), eps, unbiased=True).reshape(x.shape),
                "you used the unbiased variance (divide by n-1); normalisation layers divide "
                "by n (`unbiased=False` / `correction=0`)."),
        Suspect("eps_outside", ((grouped - grouped.mean(2, keepdim=True))
                                / (grouped.var(2, keepdim=True, unbiased=False).sqrt() + eps)
                                ).reshape(x.shape),
                "eps belongs inside the square root: (x - mean) / sqrt(var + eps)."),
        Suspect("interleaved_groups", inter_norm.transpose(1, 2).reshape(x.shape),
                "your groups take every num_groups-th channel; a group is a run of "
                "CONSECUTIVE channels: reshape to [B, num_groups, C // num_groups, H, W]."),
    ]
    expect_close(out, expected, "group_norm(x)", atol=1e-4, rtol=1e-4, suspects=suspects,
                 context=f"for x {tuple(x.shape)}, num_groups={groups}, eps={eps:g}")


# --------------------------------------------------------------------- ex5 ConditionedResBlock

BLOCK_ORACLES = ["diffusers.models.resnet.ResnetBlockCondNorm2D", "diffusers.models.resnet.ResnetBlock2D"]
BLOCK_KEYS = ["norm1.linear.weight", "norm1.linear.bias", "conv1.weight", "conv1.bias",
              "norm2.linear.weight", "norm2.linear.bias", "conv2.weight", "conv2.bias"]


def make_block_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, cin, cout, e, groups, h, w, eps = [(1, 6, 6, 10, 3, 5, 7, 1e-5), (2, 4, 8, 6, 2, 4, 3, 1e-6),
                                          (3, 10, 5, 7, 5, 6, 2, 1e-3), (1, 9, 12, 5, 3, 3, 3, 1e-5)][seed % 4]
    return {"x": torch.randn(b, cin, h, w, generator=g) * 2 + 0.5, "temb": torch.randn(b, e, generator=g),
            "in_channels": cin, "out_channels": cout, "emb_dim": e, "num_groups": groups, "eps": eps,
            "_seed": seed}


def _run_reference_adagn():
    """A correct AdaGroupNorm (exercise 3's reference), substituted for the notebook's while
    exercise 5 is graded, so a mistake in exercise 3 costs only exercise 3."""
    class AdaGroupNorm(torch.nn.Module):
        def __init__(self, emb_dim, num_channels, num_groups, eps=1e-5):
            super().__init__()
            self.num_groups, self.eps = num_groups, eps
            self.linear = torch.nn.Linear(emb_dim, 2 * num_channels)

        def forward(self, x, emb):
            scale, shift = self.linear(emb)[:, :, None, None].chunk(2, dim=1)
            return F.group_norm(x, self.num_groups, eps=self.eps) * (1 + scale) + shift
    return AdaGroupNorm


def run_block(inputs: dict, cls):
    space = getattr(getattr(cls, "__init__", None), "__globals__", None)
    had = isinstance(space, dict) and "AdaGroupNorm" in space
    saved = space.get("AdaGroupNorm") if had else None
    if isinstance(space, dict):
        space["AdaGroupNorm"] = _run_reference_adagn()
    try:
        torch.manual_seed(inputs["_seed"])
        block = cls(inputs["in_channels"], inputs["out_channels"], inputs["emb_dim"], inputs["num_groups"],
                    eps=inputs["eps"])
    finally:
        if had:
            space["AdaGroupNorm"] = saved
        elif isinstance(space, dict):
            space.pop("AdaGroupNorm", None)
    with torch.no_grad():
        for p in block.parameters():    # larger weights, so every wrong order or missing piece shows
            p.mul_(2.0)
        facts = {"state": {k: v.detach().clone() for k, v in block.state_dict().items()},
                 "shortcut_none": getattr(block, "conv_shortcut", "missing") is None,
                 "norm_types": [type(getattr(block, n, None)).__name__ for n in ("norm1", "norm2")]}
        facts["out"] = block(inputs["x"].clone(), inputs["temb"].clone())
        facts["out_other_temb"] = block(inputs["x"].clone(), inputs["temb"].clone().flip(-1) + 1.0)
    return facts


def _block_describe(inputs: dict) -> str:
    return (f"ConditionedResBlock({inputs['in_channels']}, {inputs['out_channels']}, emb_dim={inputs['emb_dim']}, "
            f"num_groups={inputs['num_groups']})")


def compare_block_structure(inputs: dict, result: dict) -> None:
    cin, cout, e = inputs["in_channels"], inputs["out_channels"], inputs["emb_dim"]
    what = _block_describe(inputs)
    state = {k: tuple(v.shape) for k, v in result["state"].items()}
    conv1 = state.get("conv1.weight")
    if conv1 is not None and len(conv1) == 4 and conv1[1] == cin + e:
        raise CheckFailed(f"{what}: conv1 takes {cin} + {e} channels: you concatenated the time embedding to the "
                          "input as extra channels. A concatenated t is diluted by every layer after it; inject it "
                          "at BOTH norms instead (norm1 and norm2 are AdaGroupNorms that read t_emb).")
    missing = [k for k in BLOCK_KEYS if k not in state]
    if any(k.startswith(("norm1.linear", "norm2.linear")) for k in missing):
        raise CheckFailed(f"{what}: norm1 and norm2 must both be AdaGroupNorm(emb_dim, channels, num_groups, eps=eps) "
                          f"(they have {result['norm_types']}): the two injection points of the block, each with its own "
                          "projection of the shared embedding (ADM conditions only the second norm; the block pinned "
                          "here, diffusers' ada_group block, conditions both).")
    if missing:
        raise CheckFailed(f"{what} has no {', '.join(missing)}: use diffusers' names norm1, conv1, norm2, conv2 "
                          "(and conv_shortcut), so the weights can be compared with ResnetBlockCondNorm2D.")
    expected = {"norm1.linear.weight": (2 * cin, e), "conv1.weight": (cout, cin, 3, 3),
                "norm2.linear.weight": (2 * cout, e), "conv2.weight": (cout, cout, 3, 3)}
    if state["norm1.linear.weight"] == (2 * cout, e) and cin != cout:
        raise CheckFailed(f"{what}: norm1 has {cout} channels, so it normalises the output of conv1: the order "
                          "is norm -> SiLU -> conv (pre-activation, as in SD): norm1 normalises the block's input "
                          f"({cin} channels), then SiLU, then conv1.")
    for k, shape in expected.items():
        if state[k] != shape:
            raise CheckFailed(f"{what}: {k} has shape {state[k]}, expected {shape} (norm1 reads the input's "
                              f"{cin} channels, conv1 maps {cin} -> {cout}, norm2 and conv2 work on {cout}).")
    own = sorted(set(state) - set(BLOCK_KEYS) - {"conv_shortcut.weight", "conv_shortcut.bias"})
    if own:
        raise CheckFailed(f"{what} has parameters of its own besides the two norms' projections ({', '.join(own)}). "
                          "One shared embedding comes in (computed once for the whole U-Net); each AdaGN's own "
                          "Linear is the block's only projection of it. No block, and no resolution, needs a "
                          "separate conditioning signal of its own.")
    if cin != cout:
        if state.get("conv_shortcut.weight") != (cout, cin, 1, 1):
            raise CheckFailed(f"{what}: the residual needs conv_shortcut = nn.Conv2d({cin}, {cout}, kernel_size=1) "
                              "when the channel counts differ.")
    elif "conv_shortcut.weight" in state or not result["shortcut_none"]:
        raise CheckFailed(f"{what}: with in_channels == out_channels the shortcut is the identity: set "
                          "self.conv_shortcut = None (diffusers' convention) and add x itself.")
    expect_shape(result["out"], (inputs["x"].shape[0], cout, *inputs["x"].shape[2:]), f"{what} output",
                 "The block keeps H and W and maps in_channels -> out_channels.")


def compare_block_values(inputs: dict, result: dict) -> None:
    compare_block_structure(inputs, result)
    cin, cout, e, groups, eps = (inputs[k] for k in ("in_channels", "out_channels", "emb_dim", "num_groups", "eps"))
    oracle = ResnetBlockCondNorm2D(in_channels=cin, out_channels=cout, temb_channels=e, groups=groups, eps=eps,
                                   time_embedding_norm="ada_group", non_linearity="swish").eval()
    oracle.load_state_dict(result["state"])
    x, temb = inputs["x"], inputs["temb"]
    with torch.no_grad():
        expected = oracle(x, temb)
        shortcut = x if oracle.conv_shortcut is None else oracle.conv_shortcut(x)
        act = F.silu(temb)
        h_act = oracle.conv2(F.silu(oracle.norm2(oracle.conv1(F.silu(oracle.norm1(x, act))), act)))
        h_relu = oracle.conv2(F.relu(oracle.norm2(oracle.conv1(F.relu(oracle.norm1(x, temb))), temb)))
        suspects = [
            Suspect("no_residual", expected - shortcut,
                    "the residual is missing: a residual block returns h + shortcut(x) (x itself when the "
                    "channel counts match, conv_shortcut(x) otherwise)."),
            Suspect("temb_activated", h_act + shortcut,
                    "you applied SiLU to t_emb before the norms; in this block (diffusers' ada_group "
                    "ResnetBlockCondNorm2D) each AdaGroupNorm's Linear reads t_emb as it is."),
            Suspect("relu", h_relu + shortcut, "the activation is SiLU (x * sigmoid(x)), not ReLU."),
        ]
        if cin == cout:
            post = F.silu(oracle.norm2(oracle.conv2(F.silu(oracle.norm1(oracle.conv1(x), temb))), temb))
            suspects.append(Suspect("post_activation", post + shortcut,
                                    "you convolved first (conv -> norm -> SiLU, the original ResNet order); SD's "
                                    "blocks are pre-activation: norm -> SiLU -> conv, twice."))
    if torch.allclose(result["out"], result["out_other_temb"]):
        raise CheckFailed(f"{_block_describe(inputs)}: the output does not change when t_emb changes: pass t_emb to "
                          "norm1 AND norm2 (self.norm1(x, temb)), that is where the timestep enters.")
    expect_close(result["out"], expected, f"{_block_describe(inputs)} output", atol=1e-4, rtol=1e-4,
                 suspects=suspects, context=f"for x {tuple(x.shape)}",
                 hint="norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, both norms reading t_emb, plus the shortcut.")


ADAGN_ORACLES = ["diffusers.models.normalization.AdaGroupNorm"]

CHECKS = Checks(
    Check("timestep_embedding_shape", make_timestep_inputs, run_timestep, compare_timestep_shape,
          seeds=range(4), forbid=TIMESTEP_ORACLES),
    Check("timestep_embedding_values", make_timestep_inputs, run_timestep, compare_timestep_values,
          seeds=range(10, 16), forbid=TIMESTEP_ORACLES),
    Check("neighbour_similarity", make_similarity_inputs, run_similarity, compare_similarity,
          seeds=range(30, 33)),
    Check("timestep_mlp_structure", make_mlp_inputs, run_mlp, compare_mlp_structure, seeds=range(3)),
    Check("timestep_mlp_values", make_mlp_inputs, run_mlp, compare_mlp_values, seeds=range(20, 23)),
    Check("adagroupnorm_shape", make_adagn_inputs, run_adagn, compare_adagn_shape, seeds=range(3),
          forbid=ADAGN_ORACLES),
    Check("adagroupnorm_values", make_adagn_inputs, run_adagn, compare_adagn_values,
          seeds=range(40, 43), forbid=ADAGN_ORACLES),
    Check("group_norm_shape", make_gn_inputs, run_gn, compare_gn_shape, seeds=range(4),
          forbid=GN_ORACLES),
    Check("group_norm_values", make_gn_inputs, run_gn, compare_gn_values, seeds=range(50, 54),
          forbid=GN_ORACLES),
    Check("conditioned_block_structure", make_block_inputs, run_block, compare_block_structure,
          seeds=range(4), forbid=BLOCK_ORACLES),
    Check("conditioned_block_values", make_block_inputs, run_block, compare_block_values,
          seeds=range(60, 64), forbid=BLOCK_ORACLES),
    module=__name__,
)
#: What a hidden test line calls: ``hidden.check("<name>", <student objects>)``.
check = CHECKS
