"""Known-wrong answers for 6-3-2, one per misconception; each must lose its exercise's points."""
from graders.submissions import Mutant

ASSIGNMENT = "6-3-2-conditioning-the-unet"

COS_SIN = "torch.cat([torch.cos(args), torch.sin(args)], dim=-1)"
FREQS = "torch.arange(half, dtype=torch.float32, device=t.device) / half)"
ADAGN = "F.group_norm(x, self.num_groups, eps=self.eps) * (1 + scale) + shift"
GN_RESHAPE = "g = x.reshape(b, num_groups, -1)"
NEIGHBOURS = "F.cosine_similarity(emb[1:], emb[:-1], dim=-1)"
MLP = "self.linear_2(self.act(self.linear_1(emb)))"
NORM1 = "self.norm1 = AdaGroupNorm(emb_dim, in_channels, num_groups, eps=eps)"
NORM2 = "self.norm2 = AdaGroupNorm(emb_dim, out_channels, num_groups, eps=eps)"
CONV1 = "self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)"
HALF1 = "h = self.conv1(F.silu(self.norm1(x, temb)))"
HALF2 = "h = self.conv2(F.silu(self.norm2(h, temb)))"

MUTANTS = [
    # ex1: the sinusoidal embedding's convention
    Mutant("sin_first", "ex1_timestep_embedding",
           ((COS_SIN, "torch.cat([torch.sin(args), torch.cos(args)], dim=-1)"),),
           "sines first"),
    Mutant("half_minus_1", "ex1_timestep_embedding",
           ((FREQS, "torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1))"),),
           "half - 1"),
    Mutant("interleaved", "ex1_timestep_embedding",
           ((COS_SIN, "torch.stack([torch.cos(args), torch.sin(args)], dim=-1).reshape(len(t), -1)"),),
           "interleav"),
    # ex2a: measuring smoothness
    Mutant("dot_not_cosine", "ex2a_neighbour_similarity", ((NEIGHBOURS, "(emb[1:] * emb[:-1]).sum(-1)"),),
           "BOTH norms"),
    Mutant("compare_with_first_row", "ex2a_neighbour_similarity",
           ((NEIGHBOURS, "F.cosine_similarity(emb[1:], emb[:1].expand_as(emb[1:]), dim=-1)"),), "row 0"),
    Mutant("wrap_around", "ex2a_neighbour_similarity",
           ((NEIGHBOURS, "F.cosine_similarity(emb, emb.roll(-1, dims=0), dim=-1)"),), "N - 1"),
    # ex2b: the timestep MLP
    Mutant("relu", "ex2b_timestep_mlp", (("nn.SiLU()", "nn.ReLU()"),), "SiLU"),
    Mutant("no_activation", "ex2b_timestep_mlp", ((MLP, "self.linear_2(self.linear_1(emb))"),), "SiLU"),
    Mutant("activation_after_last_layer", "ex2b_timestep_mlp",
           ((MLP, "self.act(self.linear_2(self.act(self.linear_1(emb))))"),), "between the two layers"),
    # ex3: adaptive group norm
    Mutant("scale_shift_swapped", "ex3_adagroupnorm",
           (("scale, shift = self.linear", "shift, scale = self.linear"),), "first half"),
    Mutant("missing_one_plus", "ex3_adagroupnorm", ((ADAGN, "F.group_norm(x, self.num_groups, eps=self.eps) * scale + shift"),),
           "(1 + scale)"),
    Mutant("modulate_before_norm", "ex3_adagroupnorm",
           ((ADAGN, "F.group_norm(x * (1 + scale) + shift, self.num_groups, eps=self.eps)"),),
           "normalis"),
    # ex4: group norm by hand
    Mutant("batch_norm_axes", "ex4_group_norm",
           ((GN_RESHAPE, "g = x.transpose(0, 1).reshape(x.shape[1], -1)"),
            ("return ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)",
             "return ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape[1], b, *x.shape[2:]).transpose(0, 1)")),
           "batch"),
    Mutant("unbiased_variance", "ex4_group_norm", (("unbiased=False", "unbiased=True"),), "n-1"),
    Mutant("eps_outside_sqrt", "ex4_group_norm",
           (("torch.sqrt(var + eps)", "(torch.sqrt(var) + eps)"),), "inside the square root"),
    Mutant("library_layer_norm", "ex4_group_norm",
           (("    b = x.shape[0]\n",
             "    b = x.shape[0]\n    return F.layer_norm(x.reshape(b, num_groups, -1), "
             "(x[0].numel() // num_groups,), eps=eps).reshape(x.shape)\n"),),
           "disabled"),
    # ex5: the residual block with two AdaGN injection points
    Mutant("just_concatenate_t", "ex5_conditioned_resblock",
           ((NORM1, "self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=eps)"),
            (CONV1, "self.conv1 = nn.Conv2d(in_channels + emb_dim, out_channels, kernel_size=3, padding=1)"),
            (NORM2, "self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=eps)"),
            (HALF1, "h = F.silu(self.norm1(x))\n        "
                    "h = self.conv1(torch.cat([h, temb[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1))"),
            (HALF2, "h = self.conv2(F.silu(self.norm2(h)))")),
           "concatenated"),
    Mutant("separate_conditioning_per_block", "ex5_conditioned_resblock",
           ((NORM1, "self.time_proj = nn.Linear(emb_dim, emb_dim)\n        " + NORM1),
            (HALF1, "temb = self.time_proj(temb)\n        " + HALF1)),
           "one shared embedding"),
    Mutant("conv_before_norm", "ex5_conditioned_resblock",
           ((NORM1, "self.norm1 = AdaGroupNorm(emb_dim, out_channels, num_groups, eps=eps)"),
            (HALF1, "h = F.silu(self.norm1(self.conv1(x), temb))"),
            (HALF2, "h = F.silu(self.norm2(self.conv2(h), temb))")),
           "pre-activation"),
    Mutant("no_residual", "ex5_conditioned_resblock", (("return h + shortcut", "return h"),), "residual"),
    Mutant("embedding_activated_first", "ex5_conditioned_resblock",
           ((HALF1, "temb = F.silu(temb)\n        " + HALF1),), "as it is"),
]
