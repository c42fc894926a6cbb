r"""guided-diffusion (ADM) checkpoints as diffusers ``UNet2DModel``\ s.

The ADM UNet of Dhariwal & Nichol (2021) — as in openai/guided-diffusion and the DPS authors'
``ffhq_10m.pt`` — is a diffusers ``UNet2DModel`` with scale-shift norm
(``h = norm(h)·(1 + s) + b`` from the time embedding), ResNet-block up/down sampling,
``ResnetDownsampleBlock2D``/``AttnDownBlock2D`` levels and 64 channels per attention head. This
module reads the architecture from the state dict's tensor shapes and renames the tensors:

- ``input_blocks.0.0`` → ``conv_in``; ``time_embed.{0,2}`` → ``time_embedding.linear_{1,2}``;
  ``label_emb`` → ``class_embedding``; ``out.{0,2}`` → ``conv_norm_out`` / ``conv_out``;
- ``input_blocks[1 + l(N+1) + i]`` → ``down_blocks[l].resnets[i]`` (+ ``.attentions[i]``), and
  ``input_blocks[1 + l(N+1) + N]`` → ``down_blocks[l].downsamplers[0]`` (``N`` res blocks per level);
- ``middle_block.{0,1,2}`` → ``mid_block.resnets[0]``, ``.attentions[0]``, ``.resnets[1]``;
- ``output_blocks[j(N+1) + i]`` → ``up_blocks[j].resnets[i]`` (+ attention, + upsampler at ``i = N``).

An attention ``qkv`` (a 1×1 conv ``[3C, C, 1]``) is stored head by head — ``[heads, (q, k, v), d, C]``
(guided-diffusion's ``QKVAttentionLegacy``) — and is split into ``to_q``/``to_k``/``to_v``.

With learned σ the network has ``2·in_channels`` outputs, ``[ε, v]`` where ``v`` interpolates the
log variance; solvers use only ε, and since ``conv_out`` is the last layer, keeping its first
``in_channels`` rows gives exactly the ε channels.

Schedule: the linear β from 1e-4 to 0.02 over 1000 steps these checkpoints were trained with
(Ho et al. 2020).

Not covered by shapes alone (the family's defaults are assumed): 64 channels per head (true for
``ffhq_10m.pt`` and guided-diffusion's 256 models). guided-diffusion's 128×128 model (4 heads) and
64×64 model (cosine schedule, the other qkv order) are recognised by their layouts and refused, as
is the 512×512 model (``channel_mult[0] = 0.5``: a time embedding wider than the first level, which
``UNet2DModel`` cannot hold) and conv up/down sampling (``resblock_updown=False``).

References:
    Dhariwal, Nichol (2021). Diffusion Models Beat GANs on Image Synthesis. arXiv:2105.05233.
    Chung et al. (2023). Diffusion Posterior Sampling for General Noisy Inverse Problems (DPS).
    arXiv:2209.14687.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from diffusers import UNet2DModel

__all__ = ["ADM_SCHEDULE", "AdmLayout", "adm_layout", "adm_to_diffusers", "adm_unet", "convert_adm",
           "is_adm_state_dict", "load_adm_unet", "read_state_dict"]

#: the noise schedule of ADM checkpoints: linear β 1e-4 … 0.02 over 1000 steps, ε-prediction
ADM_SCHEDULE: dict[str, Any] = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
}

#: channels per attention head in the ADM family (guided-diffusion's ``num_head_channels=64``)
HEAD_CHANNELS = 64

#: (model channels, channel_mult, N) of guided-diffusion models whose settings shapes cannot show
_UNSUPPORTED = {
    (192, (1, 2, 3, 4), 3): "guided-diffusion's 64x64_diffusion.pt (cosine schedule, "
                            "use_new_attention_order=True)",
    (256, (1, 1, 2, 3, 4), 2): "guided-diffusion's 128x128_diffusion.pt (num_heads=4, not 64 "
                               "channels per head)",
}

_REQUIRED = ("time_embed.0.weight", "input_blocks.0.0.weight", "out.2.weight", "middle_block.1.qkv.weight")


@dataclass(frozen=True)
class AdmLayout:
    """The ADM architecture a state dict implies.

    Attributes:
        in_channels: image channels (3 for RGB).
        out_channels: network outputs (``2·in_channels`` with learned σ).
        model_channels: channels of the first level.
        channel_mult: per-level channel multipliers (``(1, 1, 2, 2, 4, 4)`` for FFHQ / ImageNet 256).
        num_res_blocks: res blocks per level on the way down (``N``; ``N + 1`` on the way up).
        attention_levels: levels (0 = full resolution) whose blocks have self-attention.
        num_classes: classes of a class-conditional model, None for unconditional.
    """

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]
    num_classes: int | None

    @property
    def learned_sigma(self) -> bool:
        return self.out_channels == 2 * self.in_channels

    def attention_resolutions(self, image_size: int) -> tuple[int, ...]:
        """The feature-map sides with attention for ``image_size`` inputs (e.g. ``(16,)`` for FFHQ 256)."""
        return tuple(image_size // 2**level for level in self.attention_levels)

    def diffusers_config(self) -> dict[str, Any]:
        """The ``UNet2DModel`` config of this layout (ε channels only)."""
        levels = range(len(self.channel_mult))
        attn = set(self.attention_levels)
        return {
            "in_channels": self.in_channels,
            "out_channels": self.in_channels,
            "block_out_channels": tuple(self.model_channels * m for m in self.channel_mult),
            "layers_per_block": self.num_res_blocks,
            "down_block_types": tuple("AttnDownBlock2D" if l in attn else "ResnetDownsampleBlock2D"
                                      for l in levels),
            "up_block_types": tuple("AttnUpBlock2D" if l in attn else "ResnetUpsampleBlock2D"
                                    for l in reversed(levels)),
            "downsample_type": "resnet",
            "upsample_type": "resnet",
            "resnet_time_scale_shift": "scale_shift",
            "attention_head_dim": HEAD_CHANNELS,
            "norm_num_groups": 32,
            # The mid-block attention keeps its GroupNorm (diffusers drops it for scale_shift by default).
            "attn_norm_num_groups": 32,
            "norm_eps": 1e-5,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "num_class_embeds": self.num_classes,
        }


def is_adm_state_dict(state_dict: dict[str, Any]) -> bool:
    """Whether ``state_dict`` has guided-diffusion's top-level tensors."""
    return all(k in state_dict for k in _REQUIRED)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    r"""The tensors of a ``.safetensors`` file, or of a ``torch.save``\ d state dict read with
    ``torch.load(weights_only=True)`` (no code runs). A dict nesting the state dict under
    ``"state_dict"``, ``"model"`` or ``"ema"`` is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: truncated or not a checkpoint, a pickle that needs code to load, or not a dict
            of tensors; each message names the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r}: no such file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"checkpoint {str(p)!r} is not a readable safetensors file "
                             f"(truncated or another format): {err}") from err
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # "Unsupported global": a pickle naming classes or functions (code); anything else
        # ("Unsupported operand", bad bytes) is a damaged or foreign file.
        needs = re.search(r"GLOBAL (\S+)", str(err))
        if "Unsupported global" in str(err):
            what = f" ({needs.group(1)})" if needs else ""
            raise ValueError(
                f"checkpoint {str(p)!r} is a pickle that needs code to load{what}, not a plain "
                "state dict; torch.load(weights_only=True) refuses it because unpickling can run "
                "arbitrary code. If you trust it, re-save its state dict: "
                "torch.save(torch.load(path, weights_only=False).state_dict(), 'plain.pt')"
            ) from err
        raise ValueError(f"checkpoint {str(p)!r} is not a PyTorch checkpoint (truncated or "
                         f"another format): {err}") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(f"checkpoint {str(p)!r} is not a PyTorch checkpoint (truncated or "
                         f"another format): {err}") from err
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "ema"):
            if isinstance(obj.get(key), dict) and not is_adm_state_dict(obj):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {str(p)!r} holds a {type(obj).__name__}, not a state dict "
                         "(a dict of tensor names to tensors)")
    return obj


def _block_indices(state_dict: dict[str, Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pat.match(k))})


def _is_resblock(sd: dict[str, Tensor], prefix: str) -> bool:
    return f"{prefix}.in_layers.2.weight" in sd


def adm_layout(state_dict: dict[str, Tensor], name: str = "state dict") -> AdmLayout:
    """The :class:`AdmLayout` read from the tensor shapes of a guided-diffusion state dict.

    ``N`` (res blocks per level) is the index of the first output block holding an upsampler;
    level channels are the first res block's output channels; a level has attention when its first
    block has a ``qkv``.

    Raises:
        ValueError: not an ADM state dict (names the missing keys), or a variant outside the
            supported family (conv up/down sampling, ``channel_mult[0] ≠ 1``).
    """
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        some = ", ".join(list(state_dict)[:5])
        raise ValueError(f"{name} is not a guided-diffusion (ADM) UNet: missing {missing}; its "
                         f"first keys are [{some}]")
    sd = state_dict
    conv_in = sd["input_blocks.0.0.weight"]
    C, in_ch = int(conv_in.shape[0]), int(conv_in.shape[1])
    if int(sd["time_embed.0.weight"].shape[1]) != C:
        raise ValueError(f"{name}: the time embedding has {sd['time_embed.0.weight'].shape[1]} "
                         f"channels but the first level {C} (channel_mult[0] ≠ 1, as guided-"
                         "diffusion's 512×512 model); diffusers' UNet2DModel cannot hold this layout")
    outs = _block_indices(sd, "output_blocks")
    ins = _block_indices(sd, "input_blocks")
    ups = [j for j in outs if _is_resblock(sd, f"output_blocks.{j}.1") or _is_resblock(sd, f"output_blocks.{j}.2")]
    if any(f"output_blocks.{j}.1.conv.weight" in sd or f"output_blocks.{j}.2.conv.weight" in sd
           for j in outs) or any(f"input_blocks.{i}.0.op.weight" in sd for i in ins):
        raise ValueError(f"{name}: conv up/down sampling (resblock_updown=False) is not supported; "
                         "the ADM family uses ResNet-block up/down sampling")
    n_out = len(outs)
    N = ups[0] if ups else n_out - 1
    if N < 1 or n_out % (N + 1) != 0:
        raise ValueError(f"{name}: {n_out} output blocks do not form levels of N+1 blocks (N={N})")
    L = n_out // (N + 1)
    if len(ins) != L * (N + 1):
        raise ValueError(f"{name}: {len(ins)} input blocks, expected {L * (N + 1)} for {L} levels "
                         f"of {N} res blocks")
    mult, attn = [], []
    for level in range(L):
        first = f"input_blocks.{1 + level * (N + 1)}"
        if not _is_resblock(sd, f"{first}.0"):
            raise ValueError(f"{name}: {first}.0 is not a res block")
        ch = int(sd[f"{first}.0.out_layers.3.weight"].shape[0])
        if ch % C:
            raise ValueError(f"{name}: level {level} has {ch} channels, not a multiple of {C}")
        mult.append(ch // C)
        if f"{first}.1.qkv.weight" in sd:
            attn.append(level)
    known = _UNSUPPORTED.get((C, tuple(mult), N))
    if known:
        raise ValueError(f"{name} has the layout of {known}; the mapping assumes 64 channels per "
                         "head, the head-by-head qkv order and the linear schedule, so it would give "
                         "wrong predictions: not supported")
    classes = int(sd["label_emb.weight"].shape[0]) if "label_emb.weight" in sd else None
    return AdmLayout(in_channels=in_ch, out_channels=int(sd["out.2.weight"].shape[0]), model_channels=C,
                     channel_mult=tuple(mult), num_res_blocks=N, attention_levels=tuple(attn),
                     num_classes=classes)


def _resnet(src: str, dst: str) -> list[tuple[str, str]]:
    parts = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
             ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut")]
    return [(f"{src}.{a}.{w}", f"{dst}.{b}.{w}") for a, b in parts for w in ("weight", "bias")]


def _attention(sd: dict[str, Tensor], src: str, dst: str, out: dict[str, Tensor], used: set[str]) -> None:
    """Split a head-by-head ``qkv`` ``[heads·3·d, C, 1]`` into ``to_q``/``to_k``/``to_v`` ``[C, C]``."""
    for w in ("weight", "bias"):
        out[f"{dst}.group_norm.{w}"] = sd[f"{src}.norm.{w}"]
        out[f"{dst}.to_out.0.{w}"] = sd[f"{src}.proj_out.{w}"].flatten(1) if w == "weight" \
            else sd[f"{src}.proj_out.{w}"]
        used |= {f"{src}.norm.{w}", f"{src}.proj_out.{w}", f"{src}.qkv.{w}"}
    qkv_w, qkv_b = sd[f"{src}.qkv.weight"], sd[f"{src}.qkv.bias"]
    C = int(qkv_w.shape[1])
    heads = max(C // HEAD_CHANNELS, 1)
    w = qkv_w.reshape(heads, 3, C // heads, C)
    b = qkv_b.reshape(heads, 3, C // heads)
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        out[f"{dst}.{name}.weight"] = w[:, i].reshape(C, C)
        out[f"{dst}.{name}.bias"] = b[:, i].reshape(C)


def adm_to_diffusers(state_dict: dict[str, Tensor], layout: AdmLayout,
                     name: str = "state dict") -> tuple[dict[str, Tensor], list[str]]:
    """The diffusers ``UNet2DModel`` state dict of an ADM one, and the ADM keys left unused.

    Keys are renamed as in this module's docstring; only the ε rows of ``conv_out`` are kept.
    """
    sd, out, used = state_dict, {}, set()

    def take(src: str, dst: str) -> None:
        if src in sd:
            out[dst] = sd[src]
            used.add(src)

    def resnet(src: str, dst: str) -> None:
        for a, b in _resnet(src, dst):
            take(a, b)

    for w in ("weight", "bias"):
        take(f"time_embed.0.{w}", f"time_embedding.linear_1.{w}")
        take(f"time_embed.2.{w}", f"time_embedding.linear_2.{w}")
        take(f"input_blocks.0.0.{w}", f"conv_in.{w}")
        take(f"out.0.{w}", f"conv_norm_out.{w}")
    take("label_emb.weight", "class_embedding.weight")
    c = layout.in_channels
    out["conv_out.weight"], out["conv_out.bias"] = sd["out.2.weight"][:c], sd["out.2.bias"][:c]
    used |= {"out.2.weight", "out.2.bias"}

    N, L = layout.num_res_blocks, len(layout.channel_mult)
    for level in range(L):
        for i in range(N):
            k = 1 + level * (N + 1) + i
            resnet(f"input_blocks.{k}.0", f"down_blocks.{level}.resnets.{i}")
            if f"input_blocks.{k}.1.qkv.weight" in sd:
                _attention(sd, f"input_blocks.{k}.1", f"down_blocks.{level}.attentions.{i}", out, used)
        if level < L - 1:
            resnet(f"input_blocks.{1 + level * (N + 1) + N}.0", f"down_blocks.{level}.downsamplers.0")
    resnet("middle_block.0", "mid_block.resnets.0")
    _attention(sd, "middle_block.1", "mid_block.attentions.0", out, used)
    resnet("middle_block.2", "mid_block.resnets.1")
    for j in range(L):
        for i in range(N + 1):
            k = j * (N + 1) + i
            resnet(f"output_blocks.{k}.0", f"up_blocks.{j}.resnets.{i}")
            nxt = 1
            if f"output_blocks.{k}.1.qkv.weight" in sd:
                _attention(sd, f"output_blocks.{k}.1", f"up_blocks.{j}.attentions.{i}", out, used)
                nxt = 2
            if i == N and j < L - 1:
                resnet(f"output_blocks.{k}.{nxt}", f"up_blocks.{j}.upsamplers.0")
    return out, sorted(set(sd) - used)


def adm_unet(state_dict: dict[str, Tensor], name: str = "state dict",
             torch_dtype: torch.dtype = torch.float32) -> "UNet2DModel":
    """The diffusers ``UNet2DModel`` holding an ADM state dict's weights (ε outputs only).

    Raises:
        ValueError: not an ADM state dict, or tensors that do not fit the inferred layout (the
            message lists the keys that did not fit).
    """
    from diffusers import UNet2DModel

    layout = adm_layout(state_dict, name)
    mapped, unused = adm_to_diffusers(state_dict, layout, name)
    # Built on the meta device and filled by assignment: no random init of ~500 M parameters.
    with torch.device("meta"):
        unet = UNet2DModel(**layout.diffusers_config())
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(mapped))
    wrong = sorted(k for k in set(expected) & set(mapped) if expected[k].shape != mapped[k].shape)
    if unused or missing or wrong:
        parts = []
        if unused:
            parts.append(f"{len(unused)} tensors not in the ADM layout: {unused[:8]}")
        if missing:
            parts.append(f"{len(missing)} network tensors without a value: {missing[:8]}")
        if wrong:
            parts.append("shape mismatches: " + ", ".join(
                f"{k} {tuple(mapped[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5]))
        raise ValueError(f"{name} does not fit the ADM layout it suggests ({layout}): " + "; ".join(parts))
    unet.load_state_dict({k: v.contiguous() for k, v in mapped.items()}, strict=True, assign=True)
    left = [n for n, t in [*unet.named_parameters(), *unet.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{name}: no values for {left[:8]}")
    return (unet if torch_dtype == torch.float32 else unet.to(torch_dtype)).eval()


def load_adm_unet(path: str | os.PathLike[str], torch_dtype: torch.dtype = torch.float32,
                  schedule: Any = None) -> tuple["UNet2DModel", Any]:
    """``(unet, schedule)`` from a guided-diffusion checkpoint file (``.pt``/``.pth``/``.safetensors``).

    The schedule is :data:`ADM_SCHEDULE` unless ``schedule`` is given.
    """
    state_dict = read_state_dict(path)
    unet = adm_unet(state_dict, f"checkpoint {os.fspath(path)!r}", torch_dtype)
    return unet, dict(ADM_SCHEDULE) if schedule is None else schedule


def convert_adm(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write a guided-diffusion checkpoint as a DDPMPipeline folder: ``unet/`` (config.json,
    safetensors, ε outputs only) and ``scheduler/scheduler_config.json`` (:data:`ADM_SCHEDULE`),
    which ``--prior OUT_DIR`` and :func:`~nested_inverse.load_prior` load without the original file.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty.
    """
    from diffusers import DDPMScheduler

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"`out_dir`={str(out_dir)!r} exists and is not an empty folder; "
                              "give a new folder")
    unet, schedule = load_adm_unet(path)
    unet.save_pretrained(str(out / "unet"), safe_serialization=True)
    config = {k: v for k, v in schedule.items() if not k.startswith("_")}
    DDPMScheduler(**config).save_pretrained(str(out / "scheduler"))
    return out
