"""Latent priors (priors/latent.py), guidance (priors/conditional.py) and the pipeline loader
(priors/pipelines.py), on tiny random pipelines saved to disk and read back."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nested_inverse import DDIM, CountingPrior, LatentPrior
from nested_inverse.priors import (
    LatentDiffusionPrior,
    alphas_cumprod_from_schedule,
    guide,
    load_latent_pipeline,
)
from nested_inverse.priors.tiny import TINY_NUM_CLASSES, save_tiny_dit, save_tiny_sd


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {"sd": save_tiny_sd(root / "sd"), "dit": save_tiny_dit(root / "dit"),
            "sd_v": save_tiny_sd(root / "sd_v", prediction_type="v_prediction")}


@pytest.fixture(scope="module")
def sd(folders):
    return load_latent_pipeline(folders["sd"])


@pytest.fixture(scope="module")
def dit(folders):
    return load_latent_pipeline(folders["dit"])


def _z(batch=2, seed=0):
    return torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def _text(prior, prompts):
    ids = prior.tokenizer(prompts, padding="max_length", max_length=16, truncation=True,
                          return_tensors="pt").input_ids
    return prior.text_encoder(ids)[0]


def _eps_to_x0(z, eps, a):
    return (z.double() - (1 - a) ** 0.5 * eps.double()) / a**0.5


def test_loader_reads_the_folders(sd, dit, folders):
    from diffusers import DDIMScheduler

    assert (sd.kind, dit.kind) == ("text", "class")
    assert isinstance(sd, LatentPrior) and isinstance(sd.conditioned(prompt="a"), LatentPrior)
    assert sd.scaling_factor == 0.18215 and sd.vae_scale_factor == 2
    assert dit.num_classes == TINY_NUM_CLASSES and dit.id2label["3"] == "class3"
    assert sd.latent_shape(3, 16, 32) == (3, 4, 8, 16)
    assert sd.default_image_size == 16
    # the scheduler's own ᾱ (scaled_linear for SD, linear for DiT), to float32 rounding of diffusers'
    for prior, name in ((sd, "sd"), (dit, "dit")):
        config = json.loads((folders[name] / "scheduler" / "scheduler_config.json").read_text())
        assert torch.equal(prior.alphas_cumprod, alphas_cumprod_from_schedule(config))
        ref = DDIMScheduler.from_pretrained(folders[name] / "scheduler").alphas_cumprod
        assert torch.allclose(prior.alphas_cumprod.float(), ref, rtol=0, atol=1e-6)
    assert sd.alphas_cumprod[-1] != dit.alphas_cumprod[-1]


def test_scale_one_is_the_conditional_model_exactly(sd, dit):
    z, t = _z(), 600
    a = sd.alphas_cumprod[t]
    guided = sd.conditioned(prompt=["a cat", "a dog"], guidance_scale=1.0)
    z0, eps = guided.predict(z, t)
    with torch.no_grad():
        ref_eps = sd.denoiser(z, torch.tensor([t, t]),
                              encoder_hidden_states=_text(sd, ["a cat", "a dog"])).sample
    assert torch.equal(eps, ref_eps)
    assert torch.equal(z0, _eps_to_x0(z, ref_eps, a).float())
    assert (guided.nfe, guided.network_images, guided.images_per_latent) == (1, 2, 1)

    guided = dit.conditioned(class_label=[1, 7], guidance_scale=1.0)
    _, eps = guided.predict(z, t)
    with torch.no_grad():
        out = dit.denoiser(z, timestep=torch.tensor([t, t]), class_labels=torch.tensor([1, 7])).sample
    assert out.shape[1] == 8  # learned σ channels, dropped
    assert torch.equal(eps, out[:, :4])
    assert guided.network_images == 2


def test_guided_prediction_is_eps_u_plus_s_times_difference(sd, dit):
    z, t, s = _z(), 400, 3.0
    guided = sd.conditioned(prompt="a cat", negative_prompt="blurry", guidance_scale=s)
    _, eps = guided.predict(z, t)
    tt = torch.tensor([t, t])
    with torch.no_grad():
        e_c = sd.denoiser(z, tt, encoder_hidden_states=_text(sd, ["a cat"]).expand(2, -1, -1)).sample
        e_u = sd.denoiser(z, tt, encoder_hidden_states=_text(sd, ["blurry"]).expand(2, -1, -1)).sample
    # one batched pass of 2B against two separate passes: equal up to float32 rounding
    assert torch.allclose(eps, e_u + s * (e_c - e_u), rtol=0, atol=1e-5)
    assert not torch.allclose(eps, e_c, atol=1e-3)
    assert (guided.nfe, guided.network_images, guided.images_per_latent) == (1, 4, 2)
    # diffusers' own recipe (StableDiffusionPipeline): one pass over [uncond; cond], then combine
    c = guided.condition
    with torch.no_grad():
        both = sd.denoiser(torch.cat([z, z]), torch.cat([tt, tt]), encoder_hidden_states=torch.cat(
            [c.uncond.expand(2, -1, -1), c.cond.expand(2, -1, -1)])).sample
    noise_uncond, noise_text = both.chunk(2)
    assert torch.equal(eps, noise_uncond + s * (noise_text - noise_uncond))

    guided = dit.conditioned(class_label=4, guidance_scale=s)
    _, eps = guided.predict(z, t)
    with torch.no_grad():
        e_c = dit.denoiser(z, timestep=tt, class_labels=torch.tensor([4, 4])).sample[:, :4]
        e_u = dit.denoiser(z, timestep=tt, class_labels=torch.tensor([10, 10])).sample[:, :4]
    assert torch.allclose(eps, guide(e_u, e_c, s), rtol=0, atol=1e-5)


def test_nfe_and_network_images_of_a_sampler_run(sd, dit):
    for prior, kwargs in ((sd, {"prompt": "a cat"}), (dit, {"class_label": 2})):
        for scale, per in ((1.0, 1), (5.0, 2)):
            guided = prior.conditioned(**kwargs, guidance_scale=scale)
            counted = CountingPrior(guided)
            DDIM(counted, (3, 4, 8, 8)).sample(steps=5, generator=torch.Generator().manual_seed(0))
            # a guided step is one NFE of 2B network images; CountingPrior sees B per call
            assert (guided.nfe, guided.network_images) == (5, 5 * 3 * per)
            assert (counted.nfe, counted.images) == (5, 15)


def test_v_prediction_conversion_by_hand(folders):
    prior = load_latent_pipeline(folders["sd_v"])
    assert prior.prediction_type == "v_prediction"
    z, t = _z().double(), 250
    guided = prior.conditioned(prompt="a cat")
    z0, eps = guided.predict(z, t)
    with torch.no_grad():
        v = prior.denoiser(z.float(), torch.tensor([t, t]),
                           encoder_hidden_states=_text(prior, ["a cat"]).expand(2, -1, -1)).sample
    a = prior.alphas_cumprod[t]
    v = v.double()
    assert torch.allclose(z0, a.sqrt() * z - (1 - a).sqrt() * v, rtol=0, atol=1e-12)
    assert torch.allclose(eps, (1 - a).sqrt() * z + a.sqrt() * v, rtol=0, atol=1e-12)
    assert torch.allclose(a.sqrt() * z0 + (1 - a).sqrt() * eps, z, rtol=0, atol=1e-12)
    # the same network read as epsilon gives ε̂ = net: the conversion is the only difference
    as_eps = LatentDiffusionPrior(prior.denoiser, prior.vae, {"beta_schedule": "scaled_linear",
                                  "beta_start": 0.00085, "beta_end": 0.012},
                                  text_encoder=prior.text_encoder, tokenizer=prior.tokenizer,
                                  prediction_type="epsilon")
    z0_e, eps_e = as_eps.conditioned(prompt="a cat").predict(z, t)
    assert torch.allclose(eps_e, v, rtol=0, atol=1e-12)
    assert torch.allclose(z0_e, (z - (1 - a).sqrt() * v) / a.sqrt(), rtol=0, atol=1e-12)


def test_decode_and_encode_are_the_scaled_vae(sd):
    z = _z()
    with torch.no_grad():
        x = sd.decode(z)
        assert torch.equal(x, sd.vae.decode(z / 0.18215).sample)
        assert torch.equal(sd.encode(x), sd.vae.encode(x).latent_dist.mean * 0.18215)
    assert x.shape == (2, 3, 16, 16)
    z.requires_grad_(True)
    sd.decode(z).sum().backward()  # latent restoration differentiates through the decoder
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_dtype_follows_the_loader(folders):
    prior = load_latent_pipeline(folders["dit"], torch_dtype=torch.bfloat16)
    assert prior.dtype == torch.bfloat16 and next(prior.vae.parameters()).dtype == torch.bfloat16
    z0, eps = prior.conditioned(class_label=1, guidance_scale=2.0).predict(_z(), 500)
    assert z0.dtype == eps.dtype == torch.float32 and torch.isfinite(z0).all()
    assert prior.to("cpu") is prior


def test_conditions_the_prior_does_not_take(sd, dit):
    with pytest.raises(ValueError, match=r"`prompt`='a cat'.*class-conditional.*accepted: "
                                         r"`class_label` in \[0, 10\)"):
        dit.conditioned(prompt="a cat")
    with pytest.raises(ValueError, match=r"`negative_prompt`='x'.*class-conditional"):
        dit.conditioned(class_label=1, negative_prompt="x", guidance_scale=2.0)
    with pytest.raises(ValueError, match=r"`class_label`=3 .*text-conditional.*accepted: `prompt`"):
        sd.conditioned(class_label=3)
    for bad in (10, -1, [2, 11]):
        with pytest.raises(ValueError, match=r"`class_label`=(10|-1|11) is out of range; accepted: "
                                             r"integers in \[0, 10\)"):
            dit.conditioned(class_label=bad, guidance_scale=2.0)
    with pytest.raises(ValueError, match=r"`class_label`=1.5 must be an integer"):
        dit.conditioned(class_label=1.5)
    with pytest.raises(ValueError, match=r"`guidance_scale`=-1.0 must be a finite number >= 0"):
        dit.conditioned(class_label=1, guidance_scale=-1.0)
    with pytest.raises(ValueError, match=r"`guidance_scale`=3.0 needs a condition"):
        sd.conditioned(guidance_scale=3.0)
    with pytest.raises(ValueError, match=r"`negative_prompt`='x' needs guidance"):
        sd.conditioned(prompt="a", negative_prompt="x")
    with pytest.raises(ValueError, match=r"`height`=15 must be a positive multiple of 2 \(the VAE "
                                         r"factor 2\); e.g. 16"):
        sd.latent_shape(1, 15, 16)
    assert sd.latent_shape(1, 10, 14) == (1, 4, 5, 7)  # SD's UNet takes any latent size
    with pytest.raises(ValueError, match=r"`width`=18 must be a positive multiple of 4 .*patch size"):
        dit.latent_shape(1, 16, 18)
    with pytest.raises(ValueError, match=r"`z_t` must be latents \[B, 4, h, w\]"):
        sd.predict(torch.zeros(1, 3, 8, 8), 10)


def test_pipeline_folders_with_missing_parts(folders, tmp_path):
    broken = tmp_path / "no_vae"
    shutil.copytree(folders["dit"], broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ValueError, match=r"`path`=.*no_vae' has no vae: expected .*vae/config.json "
                                         r"for the VAE \(an AutoencoderKL\).*accepted: a diffusers"):
        load_latent_pipeline(broken)
    broken = tmp_path / "no_tok"
    shutil.copytree(folders["sd"], broken)
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(ValueError, match=r"`path`=.*no_tok' has no tokenizer: expected .*tokenizer "
                                         r"with vocab.json and merges.txt \(a CLIPTokenizer\)"):
        load_latent_pipeline(broken)
    (broken / "model_index.json").unlink()
    with pytest.raises(ValueError, match=r"has no model_index.json; accepted"):
        load_latent_pipeline(broken)
    with pytest.raises(FileNotFoundError, match=r"`path`=.*nowhere': no such folder"):
        load_latent_pipeline(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"not found in the local Hugging Face cache"):
        load_latent_pipeline("nobody-here/no-such-model")
    pickled = tmp_path / "pickled"
    shutil.copytree(folders["dit"], pickled)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(pickled / "vae")
    shutil.rmtree(pickled / "vae")
    vae.save_pretrained(pickled / "vae", safe_serialization=False)
    with pytest.raises(ValueError, match=r"only a pickled checkpoint.*allow_pickle=True"):
        load_latent_pipeline(pickled)
    assert load_latent_pipeline(pickled, allow_pickle=True).kind == "class"


def test_the_prior_itself_is_the_unconditional_model(sd, dit):
    z, t = _z(), 700
    tt = torch.tensor([t, t])
    with torch.no_grad():
        e_sd = sd.denoiser(z, tt, encoder_hidden_states=_text(sd, [""]).expand(2, -1, -1)).sample
        e_dit = dit.denoiser(z, timestep=tt, class_labels=torch.tensor([10, 10])).sample[:, :4]
    assert torch.equal(sd.predict(z, t)[1], e_sd)  # the empty prompt, as SD's unconditional input
    assert torch.equal(dit.predict(z, t)[1], e_dit)  # the null class


def test_dit_configs_named_transformer2dmodel_load_as_dit(folders, tmp_path):
    # DiT checkpoints saved by older diffusers call their transformer "Transformer2DModel"
    folder = tmp_path / "old_dit"
    shutil.copytree(folders["dit"], folder)
    config_file = folder / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "_class_name": "Transformer2DModel"}))
    prior = load_latent_pipeline(folder)
    assert (type(prior.denoiser).__name__, prior.kind, prior.num_classes) == \
        ("DiTTransformer2DModel", "class", 10)


def test_prompt_embeddings_are_those_of_diffusers_sd_pipeline(sd):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                   unet=sd.denoiser, scheduler=DDIMScheduler.from_config(sd.scheduler_config),
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    cond, uncond = pipe.encode_prompt("a red cat", "cpu", 1, True, "blurry")
    guided = sd.conditioned(prompt="a red cat", negative_prompt="blurry", guidance_scale=7.5)
    assert torch.equal(guided.condition.cond, cond) and torch.equal(guided.condition.uncond, uncond)
    assert pipe.vae_scale_factor == sd.vae_scale_factor


@pytest.mark.parametrize("method", ["psld", "latent-dps"])
def test_a_guided_prior_restores_through_the_latent_solvers(sd, method):
    import operators
    from nested_inverse import restore

    op = operators.make("sr2", image_shape=(3, 16, 16))
    y = op(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    runs = []
    for _ in range(2):
        guided = sd.conditioned(prompt="a cat", guidance_scale=3.0)
        x, results = restore(y, op, prior=guided, method=method, outer_steps=2, inner_steps=2,
                             seed=0, progress=False, return_intermediates=True)
        # the restoration solvers need nothing but the LatentPrior members; guidance costs 2B
        assert [r.nfe for r in results] == [0, 2, 4]
        assert (guided.nfe, guided.network_images) == (4, 8)
        assert x.shape == (1, 3, 16, 16) and torch.isfinite(x).all()
        runs.append(x)
    assert torch.equal(runs[0], runs[1])


def test_a_repo_id_is_read_from_the_local_hugging_face_cache(folders, tmp_path, monkeypatch):
    import huggingface_hub.constants

    # the cache layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<rev>/}
    repo = tmp_path / "hub" / "models--owner--tiny-dit"
    shutil.copytree(folders["dit"], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    prior = load_latent_pipeline("owner/tiny-dit", local_files_only=True)
    assert prior.kind == "class" and prior.num_classes == TINY_NUM_CLASSES


def test_class_names_from_id2label(dit):
    by_name = dit.conditioned(class_label=["class3", "CLASS7"], guidance_scale=2.0)
    assert by_name.condition.cond.tolist() == [3, 7]
    assert dit.conditioned(class_label="class3").condition.cond.tolist() == [3]
    with pytest.raises(ValueError, match=r"`class_label`='golden retriever' is not a class name of "
                                         r"this prior; accepted: integers in \[0, 10\) or names "
                                         r"from its id2label \('class0', 'class1', 'class2', …\)"):
        dit.conditioned(class_label="golden retriever")


def test_large_images_go_through_the_vae_on_tiles(sd):
    """The tiny VAE's sample size is 16 px: images over 32 px decode and encode on diffusers'
    tiles (issue 19), smaller ones whole, and the VAE's own setting is restored after."""
    vae = sd.vae
    assert vae.tile_sample_min_size == 16 and not vae.use_tiling
    small, large = _z(1), torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(sd.decode(small), vae.decode(small / 0.18215).sample)  # 16 px: whole
        x = sd.decode(large)  # 48 px > 2 × 16: tiles
        assert x.shape == (1, 3, 48, 48) and not vae.use_tiling
        assert torch.equal(x, vae.tiled_decode(large / 0.18215).sample)
        assert not torch.allclose(x, vae.decode(large / 0.18215).sample, atol=1e-4)
        z = sd.encode(x)
        assert z.shape == (1, 4, 24, 24) and not vae.use_tiling
        vae.enable_tiling()
        try:
            assert torch.equal(z, vae.encode(x).latent_dist.mean * 0.18215)
        finally:
            vae.disable_tiling()
        assert not torch.allclose(z, vae.encode(x).latent_dist.mean * 0.18215, atol=1e-4)
    large.requires_grad_(True)
    sd.decode(large).sum().backward()  # latent solvers differentiate through the tiled decoder
    assert large.grad is not None and large.grad.abs().sum() > 0
