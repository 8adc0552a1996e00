"""Hidden checks for 6-3-2 "Conditioning the U-Net" (instructor-only).

Oracles: diffusers ``get_timestep_embedding(..., flip_sin_to_cos=True,
downscale_freq_shift=0)``, diffusers ``TimestepEmbedding`` and ``AdaGroupNorm`` with the
student's weights copied in, ``torch.nn.functional.group_norm`` / ``cosine_similarity``.
Every check is make-inputs / run-student / compare (see ``common``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, get_timestep_embedding
from diffusers.models.normalization import AdaGroupNorm as DiffusersAdaGroupNorm

from .common import (CheckFailed, Suspect, assert_no_oracle_modules, expect_close,
                     expect_dtype, expect_shape, run_check, seeded)

TIMESTEP_ORACLES = ["diffusers.models.embeddings.get_timestep_embedding",
                    "diffusers.models.embeddings.Timesteps"]
GN_ORACLES = ["torch.nn.functional.group_norm", "torch.group_norm", "torch.nn.GroupNorm"]


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


def run_timestep(student, inputs: dict):
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


def check_timestep_embedding_shape(timestep_embedding) -> None:
    run_check(make_timestep_inputs, lambda i: run_timestep(timestep_embedding, i),
              compare_timestep_shape, seeds=range(4), forbidden=TIMESTEP_ORACLES)


def check_timestep_embedding_values(timestep_embedding) -> None:
    run_check(make_timestep_inputs, lambda i: run_timestep(timestep_embedding, i),
              compare_timestep_values, seeds=range(10, 16), forbidden=TIMESTEP_ORACLES)


# --------------------------------------------------------------------- ex2 timestep MLP

def make_mlp_inputs(seed: int) -> dict:
    g = seeded(seed)
    in_dim, hidden = [(6, 10), (10, 24), (34, 20)][seed % 3]
    n = [1, 5, 3][seed % 3]
    return {"in_dim": in_dim, "hidden_dim": hidden, "x": torch.randn(n, in_dim, generator=g),
            "_seed": seed}


def run_mlp(cls, inputs: dict):
    torch.manual_seed(inputs["_seed"])
    mlp = cls(inputs["in_dim"], inputs["hidden_dim"])
    assert_no_oracle_modules(mlp, [TimestepEmbedding])
    with torch.no_grad():
        out = mlp(inputs["x"].clone())
    return {"out": out, "module": mlp}


def _linear(module, name: str, fan_in: int, fan_out: int) -> torch.nn.Linear:
    layer = getattr(module, name, None)
    if not isinstance(layer, torch.nn.Linear):
        raise CheckFailed(f"TimestepMLP needs an attribute `{name}` that is an nn.Linear "
                          f"(the names follow diffusers' TimestepEmbedding).")
    if (layer.in_features, layer.out_features) != (fan_in, fan_out):
        raise CheckFailed(f"`{name}` maps {layer.in_features} -> {layer.out_features}, expected "
                          f"{fan_in} -> {fan_out}.")
    return layer


def compare_mlp_structure(inputs: dict, result: dict) -> None:
    i, h = inputs["in_dim"], inputs["hidden_dim"]
    _linear(result["module"], "linear_1", i, h)
    _linear(result["module"], "linear_2", h, h)
    expect_shape(result["out"], (len(inputs["x"]), h), f"TimestepMLP({i}, {h}) output",
                 "The MLP maps in_dim -> hidden_dim -> hidden_dim.")


def compare_mlp_values(inputs: dict, result: dict) -> None:
    compare_mlp_structure(inputs, result)
    mine = result["module"]
    oracle = TimestepEmbedding(inputs["in_dim"], inputs["hidden_dim"], act_fn="silu")
    oracle.load_state_dict({k: v for k, v in mine.state_dict().items()
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


def check_timestep_mlp_structure(TimestepMLP) -> None:
    run_check(make_mlp_inputs, lambda i: run_mlp(TimestepMLP, i), compare_mlp_structure,
              seeds=range(3))


def check_timestep_mlp_values(TimestepMLP) -> None:
    run_check(make_mlp_inputs, lambda i: run_mlp(TimestepMLP, i), compare_mlp_values,
              seeds=range(20, 23))


# --------------------------------------------------------------------- ex2b neighbour similarity

def make_similarity_inputs(seed: int) -> dict:
    g = seeded(seed)
    n, d = [(2, 5), (9, 16), (30, 7)][seed % 3]
    emb = torch.randn(n, d, generator=g) * (1 + 3 * torch.rand(n, 1, generator=g))
    return {"emb": emb}


def compare_similarity(inputs: dict, out) -> None:
    emb = inputs["emb"]
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


def check_neighbour_similarity(neighbour_similarity) -> None:
    run_check(make_similarity_inputs, lambda i: neighbour_similarity(i["emb"].clone()),
              compare_similarity, seeds=range(30, 33))


# --------------------------------------------------------------------- ex3 AdaGroupNorm

def make_adagn_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, c, groups, h, w, e = [(1, 6, 3, 5, 7, 10), (3, 12, 4, 4, 3, 6), (2, 10, 5, 9, 2, 34)][seed % 3]
    return {"x": torch.randn(b, c, h, w, generator=g) * 3 + 1,
            "emb": torch.randn(b, e, generator=g),
            "emb_dim": e, "num_channels": c, "num_groups": groups,
            "eps": [1e-5, 1e-6, 1e-3][seed % 3], "_seed": seed}


def run_adagn(cls, inputs: dict):
    torch.manual_seed(inputs["_seed"])
    norm = cls(inputs["emb_dim"], inputs["num_channels"], inputs["num_groups"],
               eps=inputs["eps"])
    assert_no_oracle_modules(norm, [DiffusersAdaGroupNorm])
    with torch.no_grad():
        # Make scale and shift large enough that a swap or a missing "1 +" is visible.
        lin = getattr(norm, "linear", None)
        if isinstance(lin, torch.nn.Linear):
            lin.weight.mul_(3.0)
            lin.bias.normal_(generator=seeded(inputs["_seed"] + 1))
        out = norm(inputs["x"].clone(), inputs["emb"].clone())
    return {"out": out, "module": norm}


def compare_adagn_shape(inputs: dict, result: dict) -> None:
    c, e = inputs["num_channels"], inputs["emb_dim"]
    lin = getattr(result["module"], "linear", None)
    if not isinstance(lin, torch.nn.Linear) or (lin.in_features, lin.out_features) != (e, 2 * c):
        raise CheckFailed(f"AdaGroupNorm({e}, {c}, ...) needs `self.linear = nn.Linear({e}, "
                          f"{2 * c})`: ONE projection producing scale and shift for every channel.")
    expect_shape(result["out"], tuple(inputs["x"].shape), "AdaGroupNorm output",
                 "Normalisation and modulation keep the shape [B, C, H, W].")


def compare_adagn_values(inputs: dict, result: dict) -> None:
    compare_adagn_shape(inputs, result)
    x, emb, c, groups, eps = (inputs[k] for k in ("x", "emb", "num_channels", "num_groups", "eps"))
    oracle = DiffusersAdaGroupNorm(inputs["emb_dim"], c, groups, act_fn=None, eps=eps)
    oracle.linear.load_state_dict(result["module"].linear.state_dict())
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


def check_adagroupnorm_shape(AdaGroupNorm) -> None:
    run_check(make_adagn_inputs, lambda i: run_adagn(AdaGroupNorm, i), compare_adagn_shape,
              seeds=range(3), forbidden=["diffusers.models.normalization.AdaGroupNorm"])


def check_adagroupnorm_values(AdaGroupNorm) -> None:
    run_check(make_adagn_inputs, lambda i: run_adagn(AdaGroupNorm, i), compare_adagn_values,
              seeds=range(40, 43), forbidden=["diffusers.models.normalization.AdaGroupNorm"])


# --------------------------------------------------------------------- ex4 group norm by hand

def make_gn_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, c, groups, h, w = [(1, 6, 2, 3, 5), (4, 12, 3, 2, 2), (2, 15, 5, 7, 1), (3, 8, 4, 5, 5)][seed % 4]
    # Channels with very different means and scales: every wrong axis gives a different answer.
    x = (torch.randn(b, c, h, w, generator=g) * torch.linspace(0.5, 4.0, c)[None, :, None, None]
         + torch.linspace(-3, 3, c)[None, :, None, None]
         + torch.randn(b, 1, 1, 1, generator=g) * 2)
    return {"x": x, "num_groups": groups, "eps": [1e-5, 1e-2, 1e-5, 1e-1][seed % 4]}


def run_gn(student, inputs: dict):
    return student(inputs["x"].clone(), inputs["num_groups"], eps=inputs["eps"])


def _norm(x, dims, eps, unbiased=False):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    return (x - mean) / torch.sqrt(var + eps)


def compare_gn_shape(inputs: dict, out) -> None:
    expect_shape(out, tuple(inputs["x"].shape), "group_norm(x)",
                 "Normalisation never changes the shape: reshape back to [B, C, H, W].")
    expect_dtype(out, inputs["x"].dtype, "group_norm(x)")


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


def check_group_norm_shape(group_norm) -> None:
    run_check(make_gn_inputs, lambda i: run_gn(group_norm, i), compare_gn_shape,
              seeds=range(4), forbidden=GN_ORACLES)


def check_group_norm_values(group_norm) -> None:
    run_check(make_gn_inputs, lambda i: run_gn(group_norm, i), compare_gn_values,
              seeds=range(50, 54), forbidden=GN_ORACLES)

