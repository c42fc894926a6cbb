r"""Random-weight guided-diffusion (ADM) state dicts with the checkpoints' exact tensor names.

Used by tests, benchmarks and the deepinv reference script (``tests/fixtures/make_adm_reference.py``),
so it imports only numpy and torch and can be loaded as a single file by another environment.

The tensors follow guided-diffusion's ``UNetModel`` with ``use_scale_shift_norm=True`` and
``resblock_updown=True``: ``time_embed.{0,2}``, ``label_emb``, ``input_blocks.k.{0,1}``,
``middle_block.{0,1,2}``, ``output_blocks.k.{0,1,2}``, ``out.{0,2}``. Values come from
``numpy.random.default_rng(seed)`` (a stable stream), drawn in key order:
weights ``~ N(0, gain²/fan_in)``, norm scales ``1 + 0.1·N(0,1)``, biases ``0.02·N(0,1)``, so two
environments rebuild identical weights from the seed alone.

References:
    Dhariwal, Nichol (2021). Diffusion Models Beat GANs on Image Synthesis. arXiv:2105.05233.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["FFHQ_LAYOUT", "IMAGENET256_LAYOUT", "adm_shapes", "random_adm_state_dict"]

#: ``ffhq_10m.pt`` (DPS): 128 channels, mult (1,1,2,2,4,4), 1 res block, attention at level 4 (16 px at 256)
FFHQ_LAYOUT = {"model_channels": 128, "channel_mult": (1, 1, 2, 2, 4, 4), "num_res_blocks": 1,
               "attention_levels": (4,)}
#: ``256x256_diffusion_uncond.pt``: 256 channels, 2 res blocks, attention at 32, 16, 8 px (levels 3-5)
IMAGENET256_LAYOUT = {"model_channels": 256, "channel_mult": (1, 1, 2, 2, 4, 4), "num_res_blocks": 2,
                      "attention_levels": (3, 4, 5)}


def _resblock(shapes: dict, p: str, cin: int, cout: int, emb: int) -> None:
    shapes[f"{p}.in_layers.0.weight"] = ("norm", (cin,))
    shapes[f"{p}.in_layers.0.bias"] = ("bias", (cin,))
    shapes[f"{p}.in_layers.2.weight"] = ("weight", (cout, cin, 3, 3))
    shapes[f"{p}.in_layers.2.bias"] = ("bias", (cout,))
    shapes[f"{p}.emb_layers.1.weight"] = ("weight", (2 * cout, emb))
    shapes[f"{p}.emb_layers.1.bias"] = ("bias", (2 * cout,))
    shapes[f"{p}.out_layers.0.weight"] = ("norm", (cout,))
    shapes[f"{p}.out_layers.0.bias"] = ("bias", (cout,))
    shapes[f"{p}.out_layers.3.weight"] = ("weight", (cout, cout, 3, 3))
    shapes[f"{p}.out_layers.3.bias"] = ("bias", (cout,))
    if cin != cout:
        shapes[f"{p}.skip_connection.weight"] = ("weight", (cout, cin, 1, 1))
        shapes[f"{p}.skip_connection.bias"] = ("bias", (cout,))


def _attention(shapes: dict, p: str, ch: int) -> None:
    shapes[f"{p}.norm.weight"] = ("norm", (ch,))
    shapes[f"{p}.norm.bias"] = ("bias", (ch,))
    shapes[f"{p}.qkv.weight"] = ("weight", (3 * ch, ch, 1))
    shapes[f"{p}.qkv.bias"] = ("bias", (3 * ch,))
    shapes[f"{p}.proj_out.weight"] = ("weight", (ch, ch, 1))
    shapes[f"{p}.proj_out.bias"] = ("bias", (ch,))


def adm_shapes(model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
               attention_levels: Sequence[int], in_channels: int = 3, learned_sigma: bool = True,
               num_classes: int | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{key: (kind, shape)}`` of guided-diffusion's UNet, in its ``state_dict`` order."""
    C, N = model_channels, num_res_blocks
    emb = 4 * C
    s: dict[str, tuple[str, tuple[int, ...]]] = {
        "time_embed.0.weight": ("weight", (emb, C)), "time_embed.0.bias": ("bias", (emb,)),
        "time_embed.2.weight": ("weight", (emb, emb)), "time_embed.2.bias": ("bias", (emb,)),
    }
    if num_classes is not None:
        s["label_emb.weight"] = ("embed", (num_classes, emb))
    s["input_blocks.0.0.weight"] = ("weight", (C, in_channels, 3, 3))
    s["input_blocks.0.0.bias"] = ("bias", (C,))
    ch, chans, k = C, [C], 1
    for level, mult in enumerate(channel_mult):
        for _ in range(N):
            _resblock(s, f"input_blocks.{k}.0", ch, mult * C, emb)
            ch = mult * C
            if level in attention_levels:
                _attention(s, f"input_blocks.{k}.1", ch)
            chans.append(ch)
            k += 1
        if level != len(channel_mult) - 1:
            _resblock(s, f"input_blocks.{k}.0", ch, ch, emb)  # down=True
            chans.append(ch)
            k += 1
    _resblock(s, "middle_block.0", ch, ch, emb)
    _attention(s, "middle_block.1", ch)
    _resblock(s, "middle_block.2", ch, ch, emb)
    k = 0
    for level, mult in reversed(list(enumerate(channel_mult))):
        for i in range(N + 1):
            skip = chans.pop()
            _resblock(s, f"output_blocks.{k}.0", ch + skip, mult * C, emb)
            ch, pos = mult * C, 1
            if level in attention_levels:
                _attention(s, f"output_blocks.{k}.1", ch)
                pos = 2
            if level and i == N:
                _resblock(s, f"output_blocks.{k}.{pos}", ch, ch, emb)  # up=True
            k += 1
    out = 2 * in_channels if learned_sigma else in_channels
    s["out.0.weight"], s["out.0.bias"] = ("norm", (C,)), ("bias", (C,))
    s["out.2.weight"], s["out.2.bias"] = ("weight", (out, C, 3, 3)), ("bias", (out,))
    return s


def random_adm_state_dict(model_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                          attention_levels: Sequence[int], in_channels: int = 3,
                          learned_sigma: bool = True, num_classes: int | None = None,
                          seed: int = 0, gain: float = 1.0) -> dict[str, torch.Tensor]:
    r"""A float32 state dict in guided-diffusion's names and shapes with seeded random values.

    >>> sd = random_adm_state_dict(32, (1, 2), 1, (1,), seed=0)
    >>> tuple(sd["out.2.weight"].shape), tuple(sd["input_blocks.2.0.emb_layers.1.weight"].shape)
    ((6, 32, 3, 3), (64, 128))
    """
    rng = np.random.default_rng(seed)
    out: dict[str, torch.Tensor] = {}
    shapes = adm_shapes(model_channels, channel_mult, num_res_blocks, attention_levels, in_channels,
                        learned_sigma, num_classes)
    for key, (kind, shape) in shapes.items():
        z = rng.standard_normal(shape, dtype=np.float32)
        if kind == "weight":
            z *= gain / np.sqrt(np.prod(shape[1:]))
        elif kind == "norm":
            z = 1 + 0.1 * z
        elif kind == "bias":
            z *= 0.02
        out[key] = torch.from_numpy(z)
    return out
