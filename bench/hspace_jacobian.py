"""UNet passes and wall time for the top singular vectors of d(eps)/dh: block iteration against sequential power
iteration, to the same tolerance, in one run.

    python bench/hspace_jacobian.py                                        # a tiny random UNet2DModel
    python bench/hspace_jacobian.py --pipeline pretrained/shapes_stable_diffusion   # its UNet, empty prompt

Both solvers work on the same (x_t, t), the same Jacobian products (reverse mode on one forward pass: ``J^T u`` is
the pullback, ``J v`` the pullback of the pullback) and the same stopping rule (every value changed by less than
``--tol``, relative). Block iteration moves k + ``--oversample`` vectors together, one batched product each way per
iteration; power iteration finds one vector after the other with deflation (the released method). "Passes" count
the forward and every batched product. The accuracy of both is reported against each other and, for small h,
against a dense SVD. The aim: block iteration at most 1/3 of the passes of power iteration. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_PASS_RATIO = 1 / 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=None, help="a Stable Diffusion folder (its UNet with the empty prompt)")
    parser.add_argument("--size", type=int, default=16, help="tiny UNet: sample size (default 16)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--oversample", type=int, default=2)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--max-iterations", type=int, default=500)
    parser.add_argument("--timestep", type=int, default=501)
    parser.add_argument("--place", default="after", choices=["before", "middle", "after"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from interpedit.hspace import HSpace, block_singular_vectors, power_iteration
    from interpedit.hspace.jacobian import JacobianProducts

    if args.pipeline:
        from interpedit.backbones.stable_diffusion import load_stable_diffusion
        from interpedit.stable_diffusion.text_conditioning import encode_prompts

        sd = load_stable_diffusion(args.pipeline, inpainting=False)
        unet = sd.unet.eval().requires_grad_(False)
        with torch.no_grad():
            empty = encode_prompts(sd.tokenizer, sd.text_encoder, [""])
        hspace = HSpace(unet, args.place, encoder_hidden_states=empty)
        side = int(unet.config.sample_size)
        description = f"{args.pipeline} UNet, empty prompt"
    else:
        from interpedit.backbones import tiny_unet2d

        unet = tiny_unet2d(sample_size=args.size, seed=0).eval().requires_grad_(False)
        hspace = HSpace(unet, args.place)
        side = args.size
        description = f"tiny random UNet2DModel, {side} px"
    x = torch.randn(1, int(unet.config.in_channels), side, side, generator=torch.Generator().manual_seed(args.seed))
    h_shape = hspace.h_shape(x, args.timestep)
    dim = int(torch.tensor(h_shape).prod())

    results, times = {}, {}
    for name, solver in (("block iteration", block_singular_vectors), ("power iteration", power_iteration)):
        kwargs = dict(k=args.k, tol=args.tol, max_iterations=args.max_iterations,
                      generator=torch.Generator().manual_seed(args.seed), h_shape=h_shape)
        if solver is block_singular_vectors:
            kwargs["oversample"] = args.oversample
        start = time.perf_counter()
        results[name] = solver(hspace, x, args.timestep, **kwargs)
        times[name] = time.perf_counter() - start

    dense = None
    if dim <= 4096:
        products = JacobianProducts(hspace, x, args.timestep, None, dim, h_shape)
        jacobian = products.jvp(torch.eye(dim).reshape(dim, *h_shape)).reshape(dim, -1).T.double()
        _, dense_values, dense_vectors = torch.linalg.svd(jacobian, full_matrices=False)
        dense = dense_values[: args.k], dense_vectors[: args.k]

    print("Top singular vectors of d(eps)/dh: block iteration against sequential power iteration")
    print(f"  {description}, h at '{args.place}' {tuple(h_shape)} ({dim} values), t = {args.timestep}, k = {args.k}, "
          f"oversample {args.oversample}, tol {args.tol:g}, {torch.get_num_threads()} threads")
    print()
    print(f"{'solver':<18} {'passes':>7} {'products':>9} {'seconds':>8}  iterations   values")
    for name, result in results.items():
        values = ", ".join(f"{v:.5g}" for v in result.values.tolist())
        print(f"{name:<18} {result.passes:>7} {result.products:>9} {times[name]:>8.2f}  "
              f"{str(result.iterations):<11}  {values}")
    block, power = results["block iteration"], results["power iteration"]
    agreement = (block.vectors.reshape(args.k, -1).double() @ power.vectors.reshape(args.k, -1).double().T)
    print(f"|cos| between the two solvers' vectors: {', '.join(f'{v:.6f}' for v in agreement.abs().diagonal())}")
    if dense is not None:
        for name, result in results.items():
            overlap = (result.vectors.reshape(args.k, -1).double() @ dense[1].T).abs().diagonal()
            error = ((result.values.double() - dense[0]).abs() / dense[0]).max()
            print(f"{name} vs dense SVD: |cos| {', '.join(f'{v:.6f}' for v in overlap)}; "
                  f"max relative value error {float(error):.2e}")
    ratio = block.passes / power.passes
    verdict = "met" if ratio <= TARGET_PASS_RATIO else "not met"
    print(f"passes block/power {ratio:.3f} (aim <= 1/3: {verdict}); time {times['block iteration'] / times['power iteration']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
