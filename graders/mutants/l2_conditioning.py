"""Known-wrong answers for 6-3-2, one per misconception; each must lose its exercise's points."""
from graders.submissions import Mutant

ASSIGNMENT = "6-3-2-conditioning-the-unet"

COS_SIN = "torch.cat([torch.cos(args), torch.sin(args)], dim=-1)"
FREQS = "torch.arange(half, dtype=torch.float32, device=t.device) / half)"
ADAGN = "F.group_norm(x, self.num_groups, eps=self.eps) * (1 + scale) + shift"
GN_RESHAPE = "g = x.reshape(b, num_groups, -1)"

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
    # ex2: smoothness measurement and the timestep MLP
    Mutant("dot_not_cosine", "ex2_neighbour_similarity",
           (("F.cosine_similarity(emb[1:], emb[:-1], dim=-1)", "(emb[1:] * emb[:-1]).sum(-1)"),),
           "BOTH norms"),
    Mutant("relu", "ex2_timestep_mlp", (("nn.SiLU()", "nn.ReLU()"),), "SiLU"),
    Mutant("no_activation", "ex2_timestep_mlp",
           (("self.linear_2(self.act(self.linear_1(emb)))", "self.linear_2(self.linear_1(emb))"),),
           "SiLU"),
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
           ((GN_RESHAPE + "                      # [B, G, C/G * H * W]",
             "g = x.transpose(0, 1).reshape(x.shape[1], -1)"),
            ("return ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)",
             "return ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape[1], b, *x.shape[2:]).transpose(0, 1)")),
           "batch"),
    Mutant("unbiased_variance", "ex4_group_norm", (("unbiased=False", "unbiased=True"),), "n-1"),
    Mutant("eps_outside_sqrt", "ex4_group_norm",
           (("torch.sqrt(var + eps)", "(torch.sqrt(var) + eps)"),), "inside the square root"),
]
