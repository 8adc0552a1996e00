"""Known-wrong answers for 6-3-4, one per misconception; each must lose its own part's points
and leave every other part's."""
from graders.submissions import Mutant

ASSIGNMENT = "6-3-4-text-conditioning-and-guidance"

# ex1 CrossAttention
K_LINE = "k = self.to_k(context).view(B, T, self.heads, self.head_dim).transpose(1, 2)"
V_LINE = "v = self.to_v(context).view(B, T, self.heads, self.head_dim).transpose(1, 2)"
SCORES = "weights = (q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)).softmax(dim=-1)"
MERGE = "out = (weights @ v).transpose(1, 2).reshape(B, N, self.heads * self.head_dim)"
# ex2a AttentionRecorder
CONTEXT = "context = encoder_hidden_states if is_cross else hidden_states"
PROBS = "probs = attn.get_attention_scores(query, key, attention_mask)"
RECORD = "self.maps.append(probs.detach().reshape(-1, attn.heads, *probs.shape[1:]).cpu())"
# ex2b token_maps
GRID = "grid = m.float().mean(dim=1).transpose(1, 2).reshape(B, T, side, side)"
UPSAMPLE = 'F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)'
# ex3 guidance
HAND = "eps_cfg = [0.95, -1.6, 1.15]"
CFG = "return eps_uncond + guidance_scale * (eps_cond - eps_uncond)"
# ex4 the loop
CALL = "eps_uncond, eps_cond = pipe.unet(x, t, encoder_hidden_states=context).sample.chunk(2)"

MUTANTS = [
    # ex1: cross-attention
    Mutant("kv_from_x", "ex1_cross_attention",
           ((K_LINE, "k = self.to_k(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)"),
            (V_LINE, "v = self.to_v(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)")),
           "K and V"),
    Mutant("softmax_over_locations", "ex1_cross_attention",
           ((SCORES, SCORES.replace("softmax(dim=-1)", "softmax(dim=-2)")),), "sum to 1"),
    Mutant("no_sqrt_d", "ex1_cross_attention",
           ((SCORES, "weights = (q @ k.transpose(-1, -2)).softmax(dim=-1)"),), "sqrt(head_dim)"),
    Mutant("heads_merged_wrongly", "ex1_cross_attention",
           ((MERGE, "out = (weights @ v).reshape(B, N, self.heads * self.head_dim)"),), "heads are merged wrongly"),
    # ex2a: the recording processor
    Mutant("processor_kv_from_hidden", "ex2a_attention_recorder",
           ((CONTEXT, "context = hidden_states"),), "K and V"),
    Mutant("processor_no_scale", "ex2a_attention_recorder",
           ((PROBS, "probs = (query @ key.transpose(-1, -2)).softmax(dim=-1)"),), "scale"),
    Mutant("processor_softmax_over_locations", "ex2a_attention_recorder",
           ((PROBS, "probs = (attn.scale * query @ key.transpose(-1, -2)).softmax(dim=1)"),), "over the tokens"),
    Mutant("records_self_attention", "ex2a_attention_recorder",
           (("if is_cross:\n", "if True:\n"),), "only cross-attention"),
    Mutant("maps_not_per_head", "ex2a_attention_recorder",
           ((RECORD, "self.maps.append(probs.detach().cpu())"),), "[B, heads, N, T]"),
    Mutant("heads_outer", "ex2a_attention_recorder",
           ((RECORD, "self.maps.append(probs.detach().reshape(attn.heads, -1, *probs.shape[1:]).transpose(0, 1).cpu())"),),
           "batch index OUTER"),
    Mutant("no_output_projection", "ex2a_attention_recorder",
           (("hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))",
             "hidden_states = attn.to_out[1](hidden_states)"),), "to_out[0]"),
    # ex2b: one map per token
    Mutant("token_axis_mixed", "ex2b_token_maps",
           ((GRID, "grid = m.float().mean(dim=1).reshape(B, T, side, side)"),), "token axis"),
    Mutant("nearest_upsampling", "ex2b_token_maps",
           ((UPSAMPLE, 'F.interpolate(grid, size=(size, size), mode="nearest")'),), "bilinear"),
    Mutant("sum_not_mean", "ex2b_token_maps",
           (("return total / len(maps)", "return total"),), "number of maps"),
    Mutant("grid_transposed", "ex2b_token_maps",
           ((GRID, GRID + ".transpose(-1, -2)"),), "transposed"),
    # ex3a: the three numbers by hand (the worked coordinate kept)
    Mutant("hand_from_cond", "ex3a_cfg_by_hand", ((HAND, "eps_cfg = [0.95, -1.8, 1.25]"),), "unconditional"),
    Mutant("hand_w_times_cond", "ex3a_cfg_by_hand", ((HAND, "eps_cfg = [0.95, -2.25, 3.75]"),), "DIFFERENCE"),
    Mutant("hand_reversed", "ex3a_cfg_by_hand", ((HAND, "eps_cfg = [0.95, 1.4, -0.35]"),), "wrong way"),
    # ex3b: the formula
    Mutant("from_cond", "ex3b_classifier_free_guidance",
           ((CFG, "return eps_cond + guidance_scale * (eps_cond - eps_uncond)"),), "extrapolated from eps_cond"),
    Mutant("w_times_cond", "ex3b_classifier_free_guidance",
           ((CFG, "return guidance_scale * eps_cond"),), "w * cond"),
    Mutant("reversed_direction", "ex3b_classifier_free_guidance",
           ((CFG, "return eps_uncond + guidance_scale * (eps_uncond - eps_cond)"),), "reversed"),
    # ex4: the loop
    Mutant("cond_uncond_order", "ex4_sample_with_cfg",
           (("context = torch.cat([uncond, cond])", "context = torch.cat([cond, uncond])"),), "[uncond, cond]"),
    Mutant("two_models", "ex4_sample_with_cfg",
           ((CALL, "eps_uncond = pipe.unet(x[:len(latents)], t, encoder_hidden_states=uncond).sample\n"
                   "        eps_cond = pipe.unet(x[len(latents):], t, encoder_hidden_states=cond).sample"),),
           "ONE model"),
    Mutant("zero_uncond", "ex4_sample_with_cfg",
           (("uncond = encode([negative_prompt] * len(prompts))", "uncond = torch.zeros_like(cond)"),),
           "empty prompt"),
    Mutant("no_init_noise_sigma", "ex4_sample_with_cfg",
           (("latents = latents.to(device, pipe.unet.dtype) * scheduler.init_noise_sigma",
             "latents = latents.to(device, pipe.unet.dtype)"),), "init_noise_sigma"),
    Mutant("no_scale_model_input", "ex4_sample_with_cfg",
           (("x = scheduler.scale_model_input(torch.cat([latents] * 2), t)", "x = torch.cat([latents] * 2)"),),
           "scale_model_input"),
    Mutant("decode_without_scaling_factor", "ex4_sample_with_cfg",
           (("pipe.vae.decode(latents / pipe.vae.config.scaling_factor)", "pipe.vae.decode(latents)"),),
           "scaling_factor"),
]
