"""Known-wrong answers for 6-3-5, one per misconception; each must lose its exercise part's points."""
from graders.submissions import Mutant

ASSIGNMENT = "6-3-5-from-pixels-to-latents"

T_LINE = ("timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), "
          "generator=generator, device=generator.device).to(latents.device)")
NOISE_LINE = ("noise = torch.randn(latents.shape, generator=generator, device=generator.device)"
              ".to(latents.device, latents.dtype)")

MUTANTS = [
    # ex1a: encode_image
    Mutant("encode_no_scaling", "ex1a_encode_image",
           (("return z * vae.config.scaling_factor", "return z"),), "factor is missing"),
    Mutant("encode_divides", "ex1a_encode_image",
           (("return z * vae.config.scaling_factor", "return z / vae.config.scaling_factor"),), "divided by it"),
    Mutant("encode_no_minus_one_one", "ex1a_encode_image",
           (("x = (2 * images - 1).to(", "x = images.to("),), "[-1, 1]"),
    Mutant("encode_sample_without_generator", "ex1a_encode_image",
           (("posterior.sample(generator)", "posterior.sample()"),), "generator"),
    # ex1b: decode_latents
    Mutant("decode_multiplies", "ex1b_decode_latents",
           (("/ vae.config.scaling_factor", "* vae.config.scaling_factor"),), "divide"),
    Mutant("decode_not_divided", "ex1b_decode_latents",
           ((" / vae.config.scaling_factor", ""),), "divide"),
    Mutant("decode_no_zero_one", "ex1b_decode_latents",
           (("return (x / 2 + 0.5).clamp(0, 1)", "return x.clamp(0, 1)"),), "x / 2 + 0.5"),
    Mutant("decode_not_clamped", "ex1b_decode_latents",
           (("return (x / 2 + 0.5).clamp(0, 1)", "return x / 2 + 0.5"),), "clamp"),
    # ex2: estimate_scaling_factor
    Mutant("estimate_per_channel_std", "ex2_estimate_scaling_factor",
           (("return 1.0 / z.float().std().item()", "return 1.0 / z.float().std(dim=(0, 2, 3)).mean().item()"),),
           "per-channel"),
    Mutant("estimate_scaled_latents", "ex2_estimate_scaling_factor",
           (("z = vae.encode(x).latent_dist.mean", "z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor"),),
           "scaled"),
    Mutant("estimate_not_inverted", "ex2_estimate_scaling_factor",
           (("return 1.0 / z.float().std().item()", "return z.float().std().item()"),), "1 / std"),
    Mutant("estimate_sampled", "ex2_estimate_scaling_factor",
           (("z = vae.encode(x).latent_dist.mean", "z = vae.encode(x).latent_dist.sample()"),), "mean"),
    # ex3: compression_ratio
    Mutant("ratio_inverted", "ex3_compression_ratio",
           (("return pixel_values / latent_values", "return latent_values / pixel_values"),), "upside down"),
    Mutant("ratio_downsample_not_squared", "ex3_compression_ratio",
           (("(height // downsample) * (width // downsample)", "(height // downsample) * width"),), "one side only"),
    Mutant("ratio_positions_only", "ex3_compression_ratio",
           (("pixel_values = channels * height * width", "pixel_values = height * width"),
            ("latent_values = latent_channels * (height", "latent_values = (height")), "left out the channels"),
    Mutant("ratio_no_input_check", "ex3_compression_ratio",
           (("if height % downsample or width % downsample:", "if False:"),), "ValueError"),
    # ex4: trace_pipeline
    Mutant("trace_without_cfg_doubling", "ex4_trace_pipeline",
           (('shapes.setdefault("unet_input", tuple(sample.shape))',
             'shapes.setdefault("unet_input", shapes["initial_latents"])'),),
           "twice"),
    Mutant("trace_noise_pred_after_guidance", "ex4_trace_pipeline",
           (('shapes.setdefault("noise_pred", tuple((output[0] if isinstance(output, tuple) else output.sample).shape))',
             'shapes.setdefault("noise_pred", tuple(shapes["initial_latents"]))'),), "before guidance"),
    Mutant("trace_prompt_embeddings_only", "ex4_trace_pipeline",
           (('shapes.setdefault("text_embeddings", tuple(kwargs["encoder_hidden_states"].shape))',
             'shapes.setdefault("text_embeddings", (shapes["token_ids"][0], *kwargs["encoder_hidden_states"].shape[1:]))'),),
           "text states the U-Net receives"),
    Mutant("trace_image_channels_last", "ex4_trace_pipeline",
           (('output_type="pt"', 'output_type="np"'),), "channels first"),
    # ex5: latent_diffusion_loss
    Mutant("loss_vae_not_frozen", "ex5_latent_diffusion_loss",
           (("with torch.no_grad():", "if True:"),), "frozen"),
    Mutant("loss_unscaled_latents", "ex5_latent_diffusion_loss",
           (("latents = vae.encode(x).latent_dist.sample(generator) * vae.config.scaling_factor",
             "latents = vae.encode(x).latent_dist.sample(generator)"),), "SCALED latents"),
    Mutant("loss_predicts_latents", "ex5_latent_diffusion_loss",
           (("return F.mse_loss(noise_pred, noise)", "return F.mse_loss(noise_pred, latents)"),), "target is the noise"),
    Mutant("loss_noise_before_timesteps", "ex5_latent_diffusion_loss",
           ((T_LINE + "\n    " + NOISE_LINE, NOISE_LINE + "\n    " + T_LINE),), "timesteps"),
]
