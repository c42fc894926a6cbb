"""guided-diffusion (ADM) state dicts: the layout read from shapes, the mapping onto diffusers'
UNet2DModel, and loading .pt / .safetensors files through load_prior and from_pretrained."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nested_inverse.priors.adm import ADM_SCHEDULE, adm_layout, adm_to_diffusers, adm_unet
from nested_inverse.priors.adm_random import (FFHQ_LAYOUT, IMAGENET256_LAYOUT, adm_shapes,
                                              random_adm_state_dict)
from nested_inverse.priors.diffusers import DiffusionPrior
from nested_inverse.priors.loading import load_prior
from nested_inverse.priors.schedule import linear_alphas_cumprod

#: a small layout with everything the family has: 2 res blocks, attention at one level, 3 levels
TINY = {"model_channels": 32, "channel_mult": (1, 2, 2), "num_res_blocks": 2, "attention_levels": (1,)}


def shapes_only(layout: dict, **kwargs) -> dict[str, torch.Tensor]:
    """guided-diffusion's keys and shapes as meta tensors (no memory, no values)."""
    return {k: torch.empty(shape, device="meta") for k, (_, shape) in adm_shapes(**layout, **kwargs).items()}


@pytest.mark.parametrize("layout", [TINY, FFHQ_LAYOUT, IMAGENET256_LAYOUT,
                                    {**TINY, "num_res_blocks": 1, "attention_levels": ()},
                                    {**TINY, "channel_mult": (1, 1, 2, 4), "attention_levels": (0, 3)}])
def test_layout_is_read_from_shapes(layout):
    # Shapes only (meta tensors, no values): the big layouts stay cheap.
    sd = shapes_only(layout)
    got = adm_layout(sd)
    assert (got.model_channels, got.channel_mult, got.num_res_blocks, got.attention_levels) == (
        layout["model_channels"], tuple(layout["channel_mult"]), layout["num_res_blocks"],
        tuple(layout["attention_levels"]))
    assert got.learned_sigma and got.in_channels == 3 and got.num_classes is None
    mapped, unused = adm_to_diffusers(sd, got)
    assert unused == []


def test_ffhq_layout_attention_resolution():
    assert adm_layout(shapes_only(FFHQ_LAYOUT)).attention_resolutions(256) == (16,)
    assert adm_layout(shapes_only(IMAGENET256_LAYOUT)).attention_resolutions(256) == (32, 16, 8)


def test_class_embedding_and_no_learned_sigma():
    sd = random_adm_state_dict(**TINY, num_classes=7, learned_sigma=False, seed=3)
    layout = adm_layout(sd)
    assert layout.num_classes == 7 and not layout.learned_sigma and layout.out_channels == 3
    unet = adm_unet(sd)
    assert torch.equal(unet.class_embedding.weight, sd["label_emb.weight"])
    assert unet.config.out_channels == 3


def test_mapping_keeps_every_tensor_and_only_eps_rows():
    sd = random_adm_state_dict(**TINY, seed=1)
    unet = adm_unet(sd)
    assert torch.equal(unet.conv_out.weight, sd["out.2.weight"][:3])
    assert torch.equal(unet.conv_out.bias, sd["out.2.bias"][:3])
    assert torch.equal(unet.down_blocks[0].downsamplers[0].conv1.weight, sd["input_blocks.3.0.in_layers.2.weight"])
    # qkv is stored head by head: [heads, (q, k, v), d, C]; 64 channels/head → one head at 64 ch.
    qkv = sd["input_blocks.4.1.qkv.weight"][..., 0]
    attn = unet.down_blocks[1].attentions[0]
    assert torch.equal(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]), qkv)
    assert attn.heads == 1
    n_adm = sum(v.numel() for v in sd.values()) - 3 * (32 * 9 + 1)  # minus the σ rows of out.2
    assert sum(p.numel() for p in unet.parameters()) == n_adm


def _qkv_heads_order():
    """128 channels = 2 heads: to_q gathers rows [0:64] and [192:256] of the head-by-head qkv."""
    layout = {**TINY, "channel_mult": (1, 4, 4)}
    sd = random_adm_state_dict(**layout, seed=2)
    return sd, adm_unet(sd)


def test_two_heads_split_head_by_head():
    sd, unet = _qkv_heads_order()
    qkv = sd["input_blocks.4.1.qkv.weight"][..., 0]
    attn = unet.down_blocks[1].attentions[0]
    assert attn.heads == 2
    torch.testing.assert_close(attn.to_q.weight, torch.cat([qkv[0:64], qkv[192:256]]), rtol=0, atol=0)
    torch.testing.assert_close(attn.to_v.weight, torch.cat([qkv[128:192], qkv[320:384]]), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_load_prior_reads_a_checkpoint_file(tmp_path, suffix):
    sd = random_adm_state_dict(**TINY, seed=4)
    path = tmp_path / f"adm{suffix}"
    torch.save(sd, path) if suffix == ".pt" else save_file(sd, str(path))
    prior = load_prior(str(path))
    assert isinstance(prior, DiffusionPrior)
    torch.testing.assert_close(prior.alphas_cumprod, linear_alphas_cumprod(1000), rtol=0, atol=1e-12)
    assert prior.prediction_type == "epsilon" and prior.clip_x0
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3, 900])
    x0, eps = prior.predict(x, t)
    with torch.no_grad():
        direct = adm_unet(sd)(x, t).sample
    # Unclipped where x̂0 stays in [-1, 1]; ε̂ is the network's own where no clipping happened.
    abar = prior.alphas_cumprod[t].view(-1, 1, 1, 1).float()
    raw_x0 = (x - (1 - abar).sqrt() * direct) / abar.sqrt()
    inside = raw_x0.abs() < 1
    assert inside.any()
    torch.testing.assert_close(eps[inside], direct[inside], rtol=1e-5, atol=1e-5)
    same = DiffusionPrior.from_pretrained(path, torch_dtype=torch.bfloat16)
    assert same.dtype == torch.bfloat16
    assert same.scheduler_config["beta_end"] == ADM_SCHEDULE["beta_end"]


# ---- bad files: each message names the file and what is wrong ---------------------------------


def test_truncated_and_foreign_files_are_named(tmp_path):
    sd = random_adm_state_dict(**TINY, seed=5)
    torch.save(sd, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    save_file(sd, str(tmp_path / "good.safetensors"))
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    for name in ("cut.pt", "notes.pt"):
        with pytest.raises(ValueError, match=rf"{name}.*not a PyTorch checkpoint \(truncated"):
            load_prior(str(tmp_path / name))
    with pytest.raises(ValueError, match=r"cut.safetensors.*not a readable safetensors file"):
        load_prior(str(tmp_path / "cut.safetensors"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match=r"tensor.pt.*holds a Tensor, not a state dict"):
        load_prior(str(tmp_path / "tensor.pt"))
    with pytest.raises(FileNotFoundError, match=r"absent.pt.*no such"):
        load_prior(str(tmp_path / "absent.pt"))


def test_pickle_needing_code_is_refused(tmp_path):
    # A whole pickled module (as `torch.save(model)`) needs its class's code to load.
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt.*pickle that needs code.*weights_only=True"):
        DiffusionPrior.from_pretrained(tmp_path / "model.pt")


def test_another_architecture_says_which_keys_did_not_fit(tmp_path):
    from diffusers import UNet2DModel

    other = UNet2DModel(sample_size=8, block_out_channels=(32, 32), layers_per_block=1,
                        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    torch.save(other.state_dict(), tmp_path / "diffusers.pt")
    with pytest.raises(ValueError, match=r"diffusers.pt.*not a guided-diffusion \(ADM\) UNet: "
                                         r"missing \['time_embed.0.weight'.*first keys are \[conv_in"):
        load_prior(str(tmp_path / "diffusers.pt"))
    sd = random_adm_state_dict(**TINY, seed=6)
    sd["input_blocks.1.0.extra.weight"] = torch.zeros(2)
    del sd["input_blocks.2.0.emb_layers.1.bias"]
    torch.save(sd, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt.*does not fit.*input_blocks.1.0.extra.weight.*"
                                         r"down_blocks.0.resnets.1.time_emb_proj.bias"):
        load_prior(str(tmp_path / "odd.pt"))
    sd = random_adm_state_dict(**TINY, seed=6)
    sd["middle_block.0.in_layers.2.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(sd, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"shape.pt.*shape mismatches: mid_block.resnets.0.conv1.weight"):
        load_prior(str(tmp_path / "shape.pt"))


@pytest.mark.parametrize("layout, match", [
    ({"model_channels": 192, "channel_mult": (1, 2, 3, 4), "num_res_blocks": 3,
      "attention_levels": (1, 2, 3)}, "64x64_diffusion.pt"),
    ({"model_channels": 256, "channel_mult": (1, 1, 2, 3, 4), "num_res_blocks": 2,
      "attention_levels": (2, 3, 4)}, "128x128_diffusion.pt"),
])
def test_models_the_mapping_would_get_wrong_are_refused(layout, match):
    with pytest.raises(ValueError, match=rf"{match}.*not supported"):
        adm_layout(shapes_only(layout, num_classes=1000))
