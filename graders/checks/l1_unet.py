"""Hidden checks for 6-3-1 "U-Net architecture" (instructor-only).

Oracles: the shapes a real convolutional encoder produces (ex1); the lesson's pinned
formula and, for the U-Net, properties measured with hooks on the student's own network:
shapes and channel counts at every level, the decoder's input being exactly
``cat([upsampled, skip_of_the_same_level])``, and gradient paths (ex2): every encoder level
must reach the output along a path that bypasses the bottleneck when ``use_skips=True``
and must not when ``use_skips=False``, and the bottleneck must reach the output; the
measured gradient footprint of an all-positive network built here (ex3); the pinned
Laplacian formula (ex4). ``receptive_field`` runs with the measuring helpers of
``sdcourse.l1_unet`` disabled: it must be arithmetic. Every check is make-inputs / run (sandbox side, ``run_*``: it returns
what it measured as plain data) / compare (see ``common``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Check, CheckFailed, Checks, Suspect, expect_close, expect_shape, seeded

#: The measuring helpers of ``sdcourse.l1_unet``: ``receptive_field`` must be arithmetic, so
#: they raise while it runs (the visible test warns the same way, ``l1.measuring_disabled``).
FOOTPRINT = ["sdcourse.l1_unet.positive_stack", "sdcourse.l1_unet.input_footprint",
             "sdcourse.l1_unet.footprint_width"]


# --------------------------------------------------------------------- ex1 level shapes

def make_level_inputs(seed: int) -> dict:
    size, base, levels = [(64, 64, 4), (48, 5, 3), (96, 3, 5), (40, 7, 4), (20, 11, 3),
                          (7, 3, 1), (24, 9, 2)][seed % 7]
    return {"image_size": size, "base_channels": base, "num_levels": levels}


def run_levels(inputs: dict, student):
    out = student(inputs["image_size"], inputs["base_channels"], inputs["num_levels"])
    try:
        return {"shapes": [[int(v) for v in s] for s in out]}
    except (TypeError, ValueError):  # not a list of triples of ints: diagnosed in compare
        return {"shapes": None, "repr": repr(out)[:200]}


def encoder_shapes(image_size: int, base_channels: int, num_levels: int) -> list[tuple]:
    """Oracle: the (C, H, W) of every level of a real encoder (1x1 convs + 2x2 pooling)."""
    convs = [nn.Conv2d(3 if i == 0 else base_channels * 2 ** (i - 1), base_channels * 2 ** i, 1)
             for i in range(num_levels)]
    h, out = torch.zeros(1, 3, image_size, image_size), []
    with torch.no_grad():
        for i, conv in enumerate(convs):
            h = conv(F.avg_pool2d(h, 2) if i else h)
            out.append(tuple(h.shape[1:]))
    return out


def compare_levels(inputs: dict, result: dict) -> None:
    s, c, n = inputs["image_size"], inputs["base_channels"], inputs["num_levels"]
    call = f"unet_level_shapes({s}, {c}, {n})"
    expected = encoder_shapes(s, c, n)
    got = None if result["shapes"] is None else [tuple(t) for t in result["shapes"]]
    if got is None or not all(len(t) == 3 for t in got):
        raise CheckFailed(f"{call} should return a list of (C, H, W) tuples, got "
                          f"{result.get('repr', got)}")
    if got == expected:
        return
    suspects = [
        ([(c * 2 ** i, s // 2 ** i, s // 2 ** i) for i in range(n + 1)],
         f"you returned num_levels + 1 levels. There are exactly num_levels entries: level 0 "
         f"at full resolution, and the last one (level {n - 1}) is the bottleneck."),
        ([(c * 2 ** i, s // 2 ** i, s // 2 ** i) for i in range(n - 1)],
         "you left out the bottleneck: there are num_levels entries and the last one IS the "
         "bottleneck."),
        ([(c * 2 ** i, s // 2 ** (i + 1), s // 2 ** (i + 1)) for i in range(n)],
         "your level 0 is already downsampled. Level 0 is at full resolution (H = W = "
         "image_size); every NEXT level halves H and W."),
        ([(c, s // 2 ** i, s // 2 ** i) for i in range(n)],
         "your channel count never changes: the channels double at every level "
         "(base_channels * 2**level) while H and W halve."),
        ([(c * 2 ** (i + 1), s // 2 ** i, s // 2 ** i) for i in range(n)],
         "level 0 has exactly base_channels channels; the channels double at every NEXT level."),
        ([(s // 2 ** i, s // 2 ** i, c * 2 ** i) for i in range(n)],
         "your tuples are (H, W, C); PyTorch's convention, pinned here, is (C, H, W)."),
    ]
    for wrong, message in suspects:
        if got == wrong:
            raise CheckFailed(f"{call} is wrong: {message}")
    raise CheckFailed(f"{call} returned {got}, but a real encoder produces {expected}.")


def make_level_error_inputs(seed: int) -> dict:
    size, base, levels = [(60, 64, 4), (30, 5, 3), (50, 3, 3)][seed % 3]
    return {"image_size": size, "base_channels": base, "num_levels": levels}


def run_level_error(inputs: dict, student):
    try:
        student(inputs["image_size"], inputs["base_channels"], inputs["num_levels"])
    except ValueError as exc:
        return {"raised": True, "message": str(exc)}
    return {"raised": False, "message": ""}


def compare_level_error(inputs: dict, result: dict) -> None:
    s, n = inputs["image_size"], inputs["num_levels"]
    if not result["raised"]:
        raise CheckFailed(
            f"unet_level_shapes({s}, {inputs['base_channels']}, {n}) should raise a ValueError: "
            f"{s} is not divisible by 2**(num_levels - 1) = {2 ** (n - 1)}, so some level would "
            "have a fractional size (and the decoder could not match the encoder).")


# --------------------------------------------------------------------- ex2 TinyUNet

RUN_UNET_CONFIGS = [  # in_channels, base_channels, num_levels, batch, H, W
    (1, 3, 2, 1, 6, 10), (3, 5, 3, 2, 12, 8), (2, 7, 4, 1, 16, 24), (3, 3, 3, 1, 20, 4),
    (1, 5, 4, 1, 8, 8),
]


def make_unet_inputs(seed: int, use_skips: bool = True) -> dict:
    cin, base, levels, b, h, w = RUN_UNET_CONFIGS[seed % len(RUN_UNET_CONFIGS)]
    return {"x": torch.randn(b, cin, h, w, generator=seeded(seed)), "in_channels": cin,
            "base_channels": base, "num_levels": levels, "use_skips": use_skips, "_seed": seed}


def make_unet_no_skip_inputs(seed: int) -> dict:
    return make_unet_inputs(seed, use_skips=False)


def _run_blocks(model) -> dict:
    """The attributes the lesson pins (None where one is missing or of the wrong type)."""
    found = {}
    for name in ("down_blocks", "up_blocks", "upsamplers"):
        blocks = getattr(model, name, None)
        found[name] = list(blocks) if isinstance(blocks, nn.ModuleList) else None
    mid = getattr(model, "mid_block", None)
    found["mid_block"] = mid if isinstance(mid, nn.Module) else None
    return found


def run_unet(inputs: dict, cls) -> dict:
    """Build the student's U-Net, run it with hooks on every level, and run the gradient-path
    experiment; return what was measured (forward errors are recorded, not raised, so that
    ``compare`` can diagnose them after the structural checks)."""
    torch.manual_seed(inputs["_seed"])
    model = cls(inputs["in_channels"], inputs["base_channels"], inputs["num_levels"],
                use_skips=inputs["use_skips"])
    blocks = _run_blocks(model)
    res = {"counts": {k: (None if v is None else (1 if k == "mid_block" else len(v)))
                      for k, v in blocks.items()},
           "error": None, "down": [], "mid": None, "up_in": [], "up_out": [], "upsampled": 0,
           "out": None, "paths": None}
    if blocks["down_blocks"] is None or blocks["up_blocks"] is None or blocks["mid_block"] is None:
        return res
    x = inputs["x"].clone()
    handles = []
    try:
        for b in blocks["down_blocks"]:
            handles.append(b.register_forward_hook(lambda m, i, o: res["down"].append(o.detach().clone())))
        handles.append(blocks["mid_block"].register_forward_hook(
            lambda m, i, o: res.__setitem__("mid", o.detach().clone())))
        for b in blocks["up_blocks"]:
            handles.append(b.register_forward_pre_hook(lambda m, i: res["up_in"].append(i[0].detach().clone())))
            handles.append(b.register_forward_hook(lambda m, i, o: res["up_out"].append(o.detach().clone())))
        for u in blocks["upsamplers"] or []:
            handles.append(u.register_forward_hook(
                lambda m, i, o: res.__setitem__("upsampled", res["upsampled"] + 1)))
        try:
            with torch.no_grad():
                res["out"] = model(x)
        except Exception as exc:  # noqa: BLE001 - diagnosed in compare
            res["error"] = {"type": type(exc).__name__, "message": str(exc)[:1000],
                            "not_implemented": isinstance(exc, NotImplementedError)}
            return res
    finally:
        for h in handles:
            h.remove()
    res["paths"] = _run_gradient_paths(model, blocks, x)
    return res


def _run_gradient_paths(model, blocks, x) -> dict:
    """Cut every level's output out of the graph (a fresh leaf tensor in its place) and ask
    which leaves the output depends on. A down block's leaf can then only reach the output
    along a path that bypasses every deeper block, the bottleneck included."""
    leaves: dict = {}

    def cut(key):
        def hook(module, inputs, output):
            leaf = output.detach().requires_grad_(True)
            leaves[key] = leaf
            return leaf
        return hook

    handles = [b.register_forward_hook(cut(str(i))) for i, b in enumerate(blocks["down_blocks"])]
    handles.append(blocks["mid_block"].register_forward_hook(cut("mid")))
    try:
        with torch.enable_grad():
            out = model(x)
            weight = torch.randn(out.shape, generator=seeded(7))
            grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()), allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return {k: (0.0 if g is None else float(g.abs().sum())) for k, g in zip(leaves, grads)}


def _channels(inputs: dict, level: int) -> int:
    return inputs["base_channels"] * 2 ** level


def _level_shape(inputs: dict, level: int) -> tuple:
    b, _, h, w = inputs["x"].shape
    return (b, _channels(inputs, level), h // 2 ** level, w // 2 ** level)


def _describe(inputs: dict) -> str:
    b, c, h, w = inputs["x"].shape
    return (f"TinyUNet({c}, {inputs['base_channels']}, {inputs['num_levels']}, "
            f"use_skips={inputs['use_skips']}) on x of shape {(b, c, h, w)}")


def _diagnose_error(inputs: dict, res: dict) -> None:
    err = res["error"]
    if err is None:
        return
    if err["not_implemented"]:
        raise CheckFailed("not implemented yet: the solution cell still raises NotImplementedError")
    text = f"{err['type']}: {err['message']}"
    if "Sizes of tensors must match" in err["message"] or "must match the size" in err["message"]:
        if res["upsampled"] == 0:
            raise CheckFailed(
                f"{_describe(inputs)} crashed ({text}). torch.cat received features of different "
                "resolutions, and no upsampler ran: the decoder must first UPSAMPLE (H and W x 2, "
                "self.upsamplers[j]) and then concatenate the skip of the same resolution.")
        raise CheckFailed(
            f"{_describe(inputs)} crashed ({text}). torch.cat received features of different "
            "resolutions: each decoder level must concatenate the encoder features of the SAME "
            "resolution (the skip from the matching level: the deepest decoder level takes the "
            "LAST skip you stored).")
    raise CheckFailed(f"{_describe(inputs)} raised {text}")


def compare_unet_shapes(inputs: dict, res: dict) -> None:
    levels = inputs["num_levels"]
    counts = res["counts"]
    for name in ("down_blocks", "up_blocks"):
        if counts[name] is None:
            raise CheckFailed(f"TinyUNet needs `self.{name}` as an nn.ModuleList (diffusers' "
                              "name); the grader hooks into it.")
    if counts["mid_block"] is None:
        raise CheckFailed("TinyUNet needs `self.mid_block`, the bottleneck block (an nn.Module).")
    for name in ("down_blocks", "up_blocks"):
        if counts[name] != levels - 1:
            raise CheckFailed(
                f"{_describe(inputs)} has {counts[name]} {name}, expected num_levels - 1 = "
                f"{levels - 1}: num_levels counts every resolution INCLUDING the bottleneck, so "
                f"there is one down block and one up block per level above it.")
    _diagnose_error(inputs, res)
    if len(res["down"]) != levels - 1 or res["mid"] is None or len(res["up_out"]) != levels - 1:
        raise CheckFailed(f"{_describe(inputs)}: call every block once, as modules "
                          "(self.down_blocks[i](h), self.mid_block(h), self.up_blocks[j](h)), so "
                          "that their outputs can be inspected.")
    for i, feat in enumerate(res["down"]):
        full = (inputs["x"].shape[0], _channels(inputs, i), *inputs["x"].shape[2:])
        hint = ("It has the full input resolution: downsample (2x2 average pooling) BETWEEN levels."
                if tuple(feat.shape) == full and i > 0 else
                "Level i has base_channels * 2**i channels at H / 2**i x W / 2**i.")
        expect_shape(feat, _level_shape(inputs, i), f"the output of down_blocks[{i}]", hint)
    expect_shape(res["mid"], _level_shape(inputs, levels - 1), "the output of mid_block",
                 f"The bottleneck is level {levels - 1}: base_channels * 2**{levels - 1} channels, "
                 f"H and W divided by 2**{levels - 1}.")
    for j, feat in enumerate(res["up_out"]):
        level = levels - 2 - j
        expect_shape(feat, _level_shape(inputs, level), f"the output of up_blocks[{j}]",
                     f"up_blocks[0] is the deepest decoder level (level {levels - 2}); each up "
                     "block reduces the channels back to its level's count.")
    expect_shape(res["out"], tuple(inputs["x"].shape), "the U-Net's output",
                 "A denoising U-Net returns a tensor of the input's shape (conv_out maps "
                 "base_channels back to in_channels).")
    if inputs["use_skips"]:
        for j, feat in enumerate(res["up_in"]):
            c = _channels(inputs, levels - 2 - j)
            if feat.shape[1] != 2 * c:
                raise CheckFailed(
                    f"up_blocks[{j}] receives {feat.shape[1]} channels, expected 2 x {c} = {2 * c}: "
                    "torch.cat([upsampled, skip], dim=1) doubles the channels at every decoder level"
                    + (" (you added the skip instead of concatenating it)." if feat.shape[1] == c else "."))


def compare_unet_skips(inputs: dict, res: dict) -> None:
    compare_unet_shapes(inputs, res)
    levels = inputs["num_levels"]
    for j, feat in enumerate(res["up_in"]):
        level = levels - 2 - j
        c = _channels(inputs, level)
        skip = res["down"][level]
        if feat.shape[1] == c:
            raise CheckFailed(
                f"up_blocks[{j}] receives {c} channels: you added the skip features instead of "
                f"concatenating them. torch.cat([upsampled, skip], dim=1) has 2 x {c} = {2 * c} "
                "channels, and the up block's first conv reduces them back to "
                f"{c}.")
        expect_shape(feat, (skip.shape[0], 2 * c, *skip.shape[2:]), f"the input of up_blocks[{j}]",
                     "It is torch.cat([upsampled, skip], dim=1): twice the level's channels.")
        if torch.allclose(feat[:, :c], skip):
            raise CheckFailed(
                f"up_blocks[{j}] receives cat([skip, upsampled]); the lesson pins diffusers' "
                "order: torch.cat([upsampled, skip], dim=1), the skip features second.")
        if not torch.allclose(feat[:, c:], skip, atol=1e-6):
            raise CheckFailed(
                f"the second half of up_blocks[{j}]'s input is not the output of "
                f"down_blocks[{level}]: the skip must carry the encoder features of the SAME level, "
                "unchanged (no pooling, no extra layer).")
    paths = res["paths"]
    for i in range(levels - 1):
        if paths.get(str(i), 0.0) == 0.0:
            raise CheckFailed(
                f"with use_skips=True, the output does not depend on down_blocks[{i}]'s output "
                "except through the bottleneck: its skip connection never reaches the decoder. "
                "The skips are the side doors that carry WHERE (fine detail) around the keyhole.")
    if paths.get("mid", 0.0) == 0.0:
        raise CheckFailed(
            "the output does not depend on the bottleneck (mid_block) at all: the decoder must "
            "start from the bottleneck's output. Skips carry WHERE, but only the bottleneck, "
            "which sees the whole image, decides WHAT.")


def compare_unet_no_skips(inputs: dict, res: dict) -> None:
    compare_unet_shapes(inputs, res)
    levels = inputs["num_levels"]
    for j, feat in enumerate(res["up_in"]):
        c = _channels(inputs, levels - 2 - j)
        if feat.shape[1] != c:
            raise CheckFailed(
                f"with use_skips=False, up_blocks[{j}] should receive only the upsampled features "
                f"({c} channels), got {feat.shape[1]}: use_skips=False builds the plain "
                "encoder-decoder (an autoencoder), with no skip and up blocks of in_channels = C.")
    paths = res["paths"]
    leaking = [i for i in range(levels - 1) if paths.get(str(i), 0.0) != 0.0]
    if leaking:
        raise CheckFailed(
            f"with use_skips=False, the output still depends on down_blocks[{leaking[0]}]'s output "
            "along a path that bypasses the bottleneck; use_skips=False must give the autoencoder, "
            "where everything passes through the keyhole.")
    if paths.get("mid", 0.0) == 0.0:
        raise CheckFailed("with use_skips=False the output does not depend on the bottleneck.")


def make_bad_size_inputs(seed: int) -> dict:
    cin, base, levels, _, h, w = RUN_UNET_CONFIGS[seed % len(RUN_UNET_CONFIGS)]
    step = 2 ** (levels - 1)
    return {"x": torch.randn(1, cin, h + 1, w + step, generator=seeded(seed)), "in_channels": cin,
            "base_channels": base, "num_levels": levels, "_seed": seed}


def run_bad_size(inputs: dict, cls) -> dict:
    torch.manual_seed(inputs["_seed"])
    model = cls(inputs["in_channels"], inputs["base_channels"], inputs["num_levels"])
    try:
        with torch.no_grad():
            model(inputs["x"].clone())
    except ValueError as exc:
        return {"raised": "ValueError", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a crash is not the clear error we ask for
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None, "message": ""}


def compare_bad_size(inputs: dict, result: dict) -> None:
    _, _, h, w = inputs["x"].shape
    need = 2 ** (inputs["num_levels"] - 1)
    if result["raised"] != "ValueError":
        got = "returned normally" if result["raised"] is None else f"raised {result['raised']}"
        raise CheckFailed(
            f"TinyUNet(..., num_levels={inputs['num_levels']}) on a {h} x {w} input {got}; it "
            f"should raise a ValueError saying that height and width must be divisible by "
            f"2**(num_levels - 1) = {need} (check at the start of forward, before any layer).")
    if "divisible" not in result["message"]:
        raise CheckFailed(f"your ValueError says {result['message']!r}; say what is wrong and what "
                          f"is needed, e.g. 'height and width must be divisible by {need} but are "
                          f"{h} x {w}'.")


# --------------------------------------------------------------------- ex3 receptive field

RF_CONFIGS = [(1, 2, 3), (2, 2, 3), (4, 2, 3), (3, 1, 5), (5, 3, 3), (2, 1, 7), (3, 3, 5), (2, 1, 3),
              (3, 3, 3), (2, 2, 7)]


def make_rf_inputs(seed: int) -> dict:
    levels, convs, k = RF_CONFIGS[seed % len(RF_CONFIGS)]
    return {"num_levels": levels, "convs_per_level": convs, "kernel_size": k}


def measured_footprint(num_levels: int, convs_per_level: int, kernel_size: int) -> int:
    """Oracle: input rows with a non-zero gradient for the centre bottleneck pixel of an
    all-positive 1-channel network (convs, 2x2 average pool between levels)."""
    layers: list[nn.Module] = []
    for level in range(num_levels):
        for _ in range(convs_per_level):
            conv = nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
            nn.init.constant_(conv.weight, 1.0)
            layers.append(conv)
        if level < num_levels - 1:
            layers.append(nn.AvgPool2d(2))
    net = nn.Sequential(*layers).double()
    step = 2 ** (num_levels - 1)
    size = step * (2 * (convs_per_level * (kernel_size - 1) + 1) + 5)
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    n = out.shape[-1]
    out[0, 0, n // 2, n // 2].backward()
    rows = (x.grad[0, 0].abs().sum(dim=1) > 0).nonzero().flatten()
    assert 0 < int(rows.min()) and int(rows.max()) < size - 1, "footprint touches the border"
    return int(rows.max() - rows.min() + 1)


def run_rf(inputs: dict, student):
    return student(inputs["num_levels"], inputs["convs_per_level"], inputs["kernel_size"])


def compare_rf(inputs: dict, result) -> None:
    n, c, k = inputs["num_levels"], inputs["convs_per_level"], inputs["kernel_size"]
    call = f"receptive_field({n}, {c}, {k})"
    if isinstance(result, dict) and "repr" in result:
        result = result["repr"]
    if isinstance(result, torch.Tensor) and result.numel() == 1:
        result = result.item()
    if isinstance(result, float) and result.is_integer():
        result = int(result)
    if not isinstance(result, int) or isinstance(result, bool):
        raise CheckFailed(f"{call} should return an int (pixels per side), got {result!r}")
    expected = measured_footprint(n, c, k)
    if result == expected:
        return
    suspects = [
        (1 + n * c * (k - 1),
         "you ignored the downsampling. After each 2x pooling, one step at the next level spans "
         "twice as many input pixels, so every later conv adds (k - 1) * 2**level pixels."),
        (1 + sum(c * (k - 1) * 2 ** lv + 2 ** lv for lv in range(n - 1)),
         "you stopped before the bottleneck's own convolutions: the bottleneck (the last level) "
         "has its convs_per_level convs too."),
        (1 + sum(c * (k - 1) * 2 ** lv for lv in range(n)),
         "you forgot the 2x2 pooling window itself: each pool widens the field by one step of "
         "its level (2**level input pixels) before the step doubles."),
        (1 + sum(c * k * 2 ** lv for lv in range(n)) + sum(2 ** lv for lv in range(n - 1)),
         "a k x k stride-1 conv widens the field by k - 1 steps, not k."),
        (1 + sum(c * (k - 1) * 2 ** (lv + 1) for lv in range(n)) + sum(2 ** (lv + 1) for lv in range(n - 1)),
         "you doubled the step too early: level 0 works at full resolution (step 1); the step "
         "doubles after each pool."),
    ]
    for wrong, message in suspects:
        if result == wrong:
            raise CheckFailed(f"{call} returned {result}, the measured footprint is {expected}: {message}")
    raise CheckFailed(f"{call} returned {result}, but the measured gradient footprint of that "
                      f"network is {expected} pixels per side.")


# --------------------------------------------------------------------- ex4 high-frequency error

LAPLACIAN = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]


def _laplacian(x: torch.Tensor, padding: int = 0, mix: bool = False) -> torch.Tensor:
    c = x.shape[1]
    k = torch.tensor(LAPLACIAN, dtype=x.dtype)
    if mix:
        return F.conv2d(x, k.expand(1, c, 3, 3), padding=padding)
    return F.conv2d(x, k.expand(c, 1, 3, 3), groups=c, padding=padding)


def reference_high_frequency_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Oracle: mean over B, C, H-2, W-2 of (Laplacian(pred) - Laplacian(target))**2, valid."""
    return (_laplacian(pred) - _laplacian(target)).pow(2).mean()


def make_hf_inputs(seed: int) -> dict:
    g = seeded(seed)
    b, c, h, w = [(1, 3, 5, 9), (3, 1, 12, 7), (2, 2, 3, 3), (1, 3, 16, 11)][seed % 4]
    target = torch.randn(b, c, h, w, generator=g)
    pred = target + 0.5 * torch.randn(b, c, h, w, generator=g) + torch.linspace(-1, 2, w)
    return {"pred": pred, "target": target}


def run_hf(inputs: dict, student):
    return student(inputs["pred"].clone(), inputs["target"].clone())


def compare_hf(inputs: dict, out) -> None:
    p, t = inputs["pred"], inputs["target"]
    expect_shape(out, (), "high_frequency_error(pred, target)",
                 "Return one number as a 0-dim tensor: the mean over every filtered value.")
    d = p - t
    suspects = [
        Suspect("no_filter", d.pow(2).mean(),
                "you returned the plain mean squared error: there is no high-pass (Laplacian) "
                "filter, so a blurry prediction with the right average colours scores well."),
        Suspect("abs", (_laplacian(p) - _laplacian(t)).abs().mean(),
                "you averaged absolute differences; the metric is the mean SQUARED difference of "
                "the Laplacian-filtered images."),
        Suspect("padded", (_laplacian(p, padding=1) - _laplacian(t, padding=1)).pow(2).mean(),
                "you zero-padded the images: the Laplacian then sees a fake edge along the "
                "border. Use a 'valid' filter (no padding): the output is (H - 2) x (W - 2)."),
        Suspect("mixed", (_laplacian(p, mix=True) - _laplacian(t, mix=True)).pow(2).mean(),
                "your filter sums over the channels; filter each channel separately "
                "(groups=C, a weight of shape [C, 1, 3, 3])."),
        Suspect("sum", (_laplacian(p) - _laplacian(t)).pow(2).sum(),
                "you summed instead of averaging: take the mean over B, C, H - 2, W - 2, so that "
                "images of different sizes are comparable."),
    ]
    expect_close(out, reference_high_frequency_error(p, t), "high_frequency_error(pred, target)",
                 atol=1e-4, rtol=1e-4, suspects=suspects,
                 context=f"for images of shape {tuple(p.shape)}")


CHECKS = Checks(
    Check("level_shapes", make_level_inputs, run_levels, compare_levels, seeds=range(7)),
    Check("level_shapes_more", make_level_inputs, run_levels, compare_levels, seeds=range(3, 6)),
    Check("level_shapes_errors", make_level_error_inputs, run_level_error, compare_level_error,
          seeds=range(3)),
    Check("unet_shapes", make_unet_inputs, run_unet, compare_unet_shapes, seeds=(0, 1, 2, 3)),
    Check("unet_skips", make_unet_inputs, run_unet, compare_unet_skips, seeds=(10, 11, 12)),
    Check("unet_no_skips", make_unet_no_skip_inputs, run_unet, compare_unet_no_skips, seeds=(21, 22)),
    Check("unet_bad_size", make_bad_size_inputs, run_bad_size, compare_bad_size, seeds=(30, 32)),
    Check("receptive_field_basic", make_rf_inputs, run_rf, compare_rf, seeds=(0, 1, 2, 7),
          forbid=FOOTPRINT),
    Check("receptive_field", make_rf_inputs, run_rf, compare_rf, seeds=range(len(RF_CONFIGS)),
          forbid=FOOTPRINT),
    Check("high_frequency_error", make_hf_inputs, run_hf, compare_hf, seeds=range(4)),
    Check("high_frequency_error_more", make_hf_inputs, run_hf, compare_hf, seeds=range(10, 14)),
    module=__name__,
)
#: What a hidden test line calls: ``hidden.check("<name>", <student objects>)``.
check = CHECKS
