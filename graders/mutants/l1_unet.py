"""Known-wrong answers for 6-3-1, one per misconception; each must lose its exercise's points."""
from graders.submissions import Mutant

ASSIGNMENT = "6-3-1-unet-architecture"

LEVELS = ("return [(base_channels * 2 ** i, image_size // 2 ** i, image_size // 2 ** i) "
          "for i in range(num_levels)]")
CAT = "torch.cat([h, skip], dim=1) if self.use_skips else h"
UP_IN = "2 * ch[i] if use_skips else ch[i]"
RF_CONV = "r += convs_per_level * (kernel_size - 1) * j"
HF_FILTER = "F.conv2d(pred - target, weight, groups=c)"

MUTANTS = [
    # ex1: the dimension walkthrough
    Mutant("extra_level", "ex1_unet_level_shapes",
           ((LEVELS, LEVELS.replace("range(num_levels)", "range(num_levels + 1)")),),
           "num_levels entries"),
    Mutant("level0_downsampled", "ex1_unet_level_shapes",
           ((LEVELS, "return [(base_channels * 2 ** i, image_size // 2 ** (i + 1), "
                     "image_size // 2 ** (i + 1)) for i in range(num_levels)]"),),
           "full resolution"),
    Mutant("channels_constant", "ex1_unet_level_shapes",
           ((LEVELS, "return [(base_channels, image_size // 2 ** i, image_size // 2 ** i) "
                     "for i in range(num_levels)]"),),
           "channels double"),
    Mutant("hwc_order", "ex1_unet_level_shapes",
           ((LEVELS, "return [(image_size // 2 ** i, image_size // 2 ** i, base_channels * 2 ** i) "
                     "for i in range(num_levels)]"),),
           "(C, H, W)"),
    # ex2: the U-Net itself
    Mutant("add_not_concat", "ex2_tiny_unet",
           ((CAT, "h + skip if self.use_skips else h"), (UP_IN, "ch[i]")),
           "instead of concatenating"),
    Mutant("skip_wrong_level", "ex2_tiny_unet",
           (("skip = skips.pop()", "skip = skips.pop(0)"),), "SAME resolution"),
    Mutant("no_upsampling", "ex2_tiny_unet",
           (("h = upsample(h)", "h = h"),), "UPSAMPLE"),
    Mutant("bottleneck_ignored", "ex2_tiny_unet",
           (("h = self.mid_block(h)", "h = 0 * self.mid_block(h)"),), "decides WHAT"),
    Mutant("extra_down_block", "ex2_tiny_unet",
           (("ch[i]) for i in range(num_levels - 1)])", "ch[i]) for i in range(num_levels)])"),),
           "INCLUDING the bottleneck"),
    Mutant("use_skips_ignored", "ex2_tiny_unet",
           ((CAT, "torch.cat([h, skip], dim=1)"), (UP_IN, "2 * ch[i]")), "use_skips=False"),
    # ex3: receptive field arithmetic
    Mutant("ignores_downsampling", "ex3_receptive_field",
           ((RF_CONV, "r += convs_per_level * (kernel_size - 1)"),
            ("            r += j\n", "")),
           "ignored the downsampling"),
    Mutant("bottleneck_convs_missing", "ex3_receptive_field",
           (("for level in range(num_levels):", "for level in range(num_levels - 1):"),
            ("if level < num_levels - 1:", "if True:")),
           "bottleneck's own convolutions"),
    Mutant("pool_window_missing", "ex3_receptive_field",
           (("            r += j\n", ""),), "pooling window"),
    Mutant("kernel_not_minus_one", "ex3_receptive_field",
           ((RF_CONV, "r += convs_per_level * kernel_size * j"),), "k - 1"),
    Mutant("measured_not_computed", "ex3_receptive_field",
           (("    r, j = 1, 1\n",
             "    step = 2 ** (num_levels - 1)\n"
             "    size = step * (2 * (convs_per_level * (kernel_size - 1) + 1) + 5)\n"
             "    mask = l1.input_footprint(l1.positive_stack(num_levels, convs_per_level, kernel_size),\n"
             "                              torch.ones(1, 1, size, size), (size // step // 2, size // step // 2))\n"
             "    return l1.footprint_width(mask)\n"
             "    r, j = 1, 1\n"),), "arithmetic"),
    # ex4: the high-frequency metric
    Mutant("no_high_pass", "ex4_high_frequency_error",
           ((HF_FILTER, "(pred - target)"),), "no high-pass"),
    Mutant("zero_padding", "ex4_high_frequency_error",
           ((HF_FILTER, "F.conv2d(pred - target, weight, groups=c, padding=1)"),), "padd"),
    Mutant("channels_mixed", "ex4_high_frequency_error",
           (("weight = kernel.expand(c, 1, 3, 3)", "weight = kernel.expand(1, c, 3, 3)"),
            (HF_FILTER, "F.conv2d(pred - target, weight)")),
           "each channel separately"),
    Mutant("absolute_error", "ex4_high_frequency_error",
           (("return (diff ** 2).mean()", "return diff.abs().mean()"),), "SQUARED"),
    Mutant("summed_not_averaged", "ex4_high_frequency_error",
           (("return (diff ** 2).mean()", "return (diff ** 2).sum()"),), "MEAN"),
]
