r"""Seconds per network evaluation of the guided-diffusion (ADM) priors at 256 px, random weights.

One evaluation = one ``DiffusionPrior.predict`` of a batch of one 3×256×256 image (what each step of
a solver costs), for the full-width layouts of ``ffhq_10m.pt`` and ``256x256_diffusion_uncond.pt``
(the class-conditional ``256x256_diffusion.pt`` has the same network plus a class embedding).
Median of ``--repeats`` after one warm-up, in float32 (or ``--dtype``) on ``--device``.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/adm_speed.py --threads 1 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nested_inverse.priors.adm import ADM_SCHEDULE, adm_unet
from nested_inverse.priors.adm_random import FFHQ_LAYOUT, IMAGENET256_LAYOUT, random_adm_state_dict
from nested_inverse.priors.diffusers import DiffusionPrior

LAYOUTS = {"ffhq_10m.pt": FFHQ_LAYOUT, "256x256_diffusion_uncond.pt": IMAGENET256_LAYOUT}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"| checkpoint layout | parameters | s / evaluation ({args.size} px, {args.device}, "
          f"{args.dtype}, {torch.get_num_threads()} threads) |")
    print("|---|---|---|")
    for name, layout in LAYOUTS.items():
        unet = adm_unet(random_adm_state_dict(**layout, seed=0), torch_dtype=DTYPES[args.dtype])
        prior = DiffusionPrior(unet, ADM_SCHEDULE).to(args.device)
        x = torch.randn(1, 3, args.size, args.size, device=args.device)
        times = []
        with torch.no_grad():
            for i in range(args.repeats + 1):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                prior.predict(x, 500)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                if i:
                    times.append(time.perf_counter() - t0)
        n = sum(q.numel() for q in unet.parameters())
        print(f"| {name} | {n / 1e6:.1f} M | {statistics.median(times):.2f} |", flush=True)
        del unet, prior


if __name__ == "__main__":
    main()
