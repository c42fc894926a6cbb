"""Per-step cost of latent generation apart from the network and the decoder (issue 11's 5 % target).

A nested generation (K outer × I inner guided DDIM steps) is run over a latent prior with the
denoiser's forward timed by hooks and the decoder timed by the stream (``decode_s``). What is left,
``total − network − decoding``, is everything else: guidance (the 2B batch, the split and
ε_u + s(ε_c − ε_u)), the ε/v conversion in float64 (together: the time inside the guided prior's
``predict`` outside the network, shown apart), the DDIM updates and noise, the nested outer
steps, the stream and its bookkeeping. It is reported per NFE as a share of one network evaluation
(one batched pass of 2B latents with guidance, B without). A second measurement runs the same
nested sampler with the denoiser's forward replaced by the identity ("instant network", as
``solver_overhead.py`` does for solvers): its time per NFE is the overhead alone, without the noise
of subtracting two large timings.

    python benchmarks/latent_overhead.py                      # tiny SD and DiT pipelines
    python benchmarks/latent_overhead.py --latent 64          # tiny networks at SD-sized latents
    python benchmarks/latent_overhead.py --dit-xl --latent 32 # DiT-XL/2's size, random weights
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import nested_inverse as ni
from nested_inverse.priors import LatentDiffusionPrior, load_latent_pipeline
from nested_inverse.priors.tiny import save_tiny_dit, save_tiny_sd


class NetworkClock:
    """Seconds spent inside ``module.forward``, from forward pre/post hooks."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds, self.calls, self._start = 0.0, 0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_):
        self._start = time.perf_counter()

    def _post(self, *_):
        self.seconds += time.perf_counter() - self._start
        self.calls += 1


def dit_xl(folder: Path) -> LatentDiffusionPrior:
    """DiT-XL/2's transformer (28 layers, hidden 1152, 1000 classes) with random weights over the
    tiny VAE: the real network's cost, for the denominator."""
    from diffusers import DiTTransformer2DModel

    prior = load_latent_pipeline(folder)
    torch.manual_seed(0)
    big = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4,
                                out_channels=8, num_layers=28, sample_size=32, patch_size=2,
                                num_embeds_ada_norm=1000).eval()
    return LatentDiffusionPrior(big, prior.vae, prior.scheduler_config)


def timed_predict(guided) -> list[float]:
    """Wrap ``guided.predict`` on the instance; returns the list its seconds accumulate in."""
    spent, inner = [0.0], guided.predict

    def predict(z_t, t):
        start = time.perf_counter()
        try:
            return inner(z_t, t)
        finally:
            spent[0] += time.perf_counter() - start

    guided.predict = predict
    return spent


class _Output:
    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


def instant_overhead(prior, cond: dict, scale: float, shape: tuple, outer: int, inner: int,
                     repeats: int) -> float:
    """Milliseconds per NFE of the nested sampler with the denoiser's forward replaced by one that
    returns its input (no decoding): the sampler's own work, free of timing noise from the network."""
    forward = prior.denoiser.forward
    prior.denoiser.forward = lambda x, *args, **kwargs: _Output(x)
    try:
        guided = prior.conditioned(**cond, guidance_scale=scale)
        sampler = ni.NestedSampler.unconditional(guided, shape, outer, inner, device=prior.device)
        times = []
        for r in range(repeats + 1):  # the first is a warm-up
            gens = [torch.Generator().manual_seed(r * 100 + i) for i in range(shape[0])]
            start = time.perf_counter()
            with torch.no_grad():
                sampler.sample(gens)
            times.append((time.perf_counter() - start) / (outer * inner))
        return sorted(times[1:])[len(times[1:]) // 2] * 1e3
    finally:
        prior.denoiser.forward = forward


def measure(prior, cond: dict, scale: float, batch: int, latent: int, outer: int, inner: int,
            repeats: int) -> dict:
    clock = NetworkClock(prior.denoiser)
    f = prior.vae_scale_factor
    kw = dict(outer_steps=outer, inner_steps=inner, num_images=batch, height=latent * f,
              width=latent * f)
    ni.generate(prior.conditioned(**cond, guidance_scale=scale), **kw)  # warm-up
    rows = []
    for r in range(repeats):
        guided = prior.conditioned(**cond, guidance_scale=scale)
        in_predict = timed_predict(guided)
        clock.seconds, clock.calls = 0.0, 0
        start = time.perf_counter()
        out = ni.generate(guided, seed=r, **kw)
        total = time.perf_counter() - start
        net = clock.seconds
        rows.append((total, net, out.decode_s, in_predict[0], out.nfe, out.network_images))
    rows.sort(key=lambda row: (row[0] - row[1] - row[2]) / row[4])
    total, net, dec, pred, nfe, images = rows[len(rows) // 2]  # the median run by overhead
    other = total - net - dec
    shape = (batch, prior.latent_channels, latent, latent)
    instant = instant_overhead(prior, cond, scale, shape, outer, inner, max(repeats, 5))
    return {"instant_ms": instant, "instant_share": instant / (net / nfe * 1e3) * 100,
            "nfe": nfe, "images": images, "net_ms": net / nfe * 1e3, "dec_ms": dec / outer * 1e3,
            "other_ms": other / nfe * 1e3, "guide_ms": (pred - net) / nfe * 1e3,
            "share": other / net * 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", type=int, default=8, help="latent side h = w (default 8)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--outer", type=int, default=4)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier timings on a shared CPU)")
    parser.add_argument("--dit-xl", action="store_true",
                        help="only DiT-XL/2's transformer (random weights; slow on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = Path(tempfile.mkdtemp())
    if args.dit_xl:
        pipelines = {"DiT-XL/2 (random)": (dit_xl(save_tiny_dit(root / "dit")), {"class_label": 207}, 4.0)}
    else:
        sd = load_latent_pipeline(save_tiny_sd(root / "sd"))
        dit = load_latent_pipeline(save_tiny_dit(root / "dit"))
        pipelines = {"tiny SD": (sd, {"prompt": "a photo of a cat"}, 7.5),
                     "tiny DiT": (dit, {"class_label": 3}, 4.0)}
    print(f"latents [{args.batch}, 4, {args.latent}, {args.latent}], {args.outer}×{args.inner} "
          f"nested, {torch.get_num_threads()} threads, median of {args.repeats}")
    print("| pipeline | guidance | NFE | network images | network per NFE | decoder per outer step "
          "| everything else per NFE | of which guidance + conversion | share of one NFE "
          "| everything else, instant network | its share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (prior, cond, scale) in pipelines.items():
        for s in (scale, 1.0):
            m = measure(prior, cond, s, args.batch, args.latent, args.outer, args.inner, args.repeats)
            print(f"| {name} | s = {s:g} | {m['nfe']} | {m['images']} | {m['net_ms']:.2f} ms | "
                  f"{m['dec_ms']:.2f} ms | {m['other_ms']:.3f} ms | {m['guide_ms']:.3f} ms | "
                  f"{m['share']:.1f} % | {m['instant_ms']:.3f} ms | {m['instant_share']:.1f} % |",
                  flush=True)


if __name__ == "__main__":
    main()
