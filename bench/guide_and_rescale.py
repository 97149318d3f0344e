"""One Guide-and-Rescale edit: our pass schedule against the reference's four passes at every step, in one run.

    python bench/guide_and_rescale.py                                       # a tiny random pipeline, 64 px
    python bench/guide_and_rescale.py --pipeline pretrained/shapes_stable_diffusion
    python bench/guide_and_rescale.py --pipeline sd15 --resolution 512      # SD-1.5-sized random weights (GPU)

Rows, on the same components, image, prompts and preset, timed in turn after warm-up:

- (a) ours: ``GuideAndRescaleEdit`` (``reference="exact"``): guided steps batch ``uncond``, ``cur_trg`` and
  ``inv_src`` into one call without gradients, then ``cur_src`` with gradients; unguided steps one CFG call;
- (a') ours with ``reference="inversion"``: the ``inv_src`` records come from the DDIM inversion;
- (a'') also with ``attention_prompt="target"`` (beyond the paper): the current latent's maps are taken under the
  target prompt, so the CFG pass carries the gradient;
- (b) the reference schedule: at every step, guided or not, four separate calls (``uncond`` and ``inv_src``
  without gradients, ``cur_src`` and ``cur_trg`` with), then the same combination.

The three give the same edit up to batching differences (printed). UNet forwards and backwards (batch entries) are
counted with ``count_unet_calls``; on CUDA the peak memory of each row is reported. The aim: (a) <= 0.6x the
reference's forwards for the non-style preset. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402  (after the path set-up)
    add_run_arguments,
    device_note,
    interleaved_rounds,
    refuses_big_preset_on_cpu,
    run_device,
)

TARGET_FORWARD_RATIO = 0.6
SOURCE = "a large red circle at the center"
TARGET = "a large blue circle at the center"


def reference_schedule(method):
    """Run ``method``'s edit with the reference's four passes at every step (the guiders' weights unchanged)."""
    from interpedit.guidance.guide_and_rescale import GuidedDenoiser

    class FourPasses(GuidedDenoiser):
        def __call__(self, x, t):
            step = self.step
            active = [(g, w) for g in self.guiders if (w := g.weight(step, self.num_steps)) != 0]
            records = {}
            with torch.no_grad():
                uncond, _ = self._call(["uncond"], x, t, record=False, detach=True)
                _, inv = self._call(["inv_src"], x, t, record=True, detach=True)
            records.update(inv)
            z = x.detach().requires_grad_(True)
            with torch.enable_grad():
                _, cur_src = self._call(["cur_src"], z, t, record=True, detach=False)
                target, cur_trg = self._call(["cur_trg"], z, t, record=True, detach=False)
                records.update(cur_src)
                records.update(cur_trg)
                energies = [(g, w) for g, w in active if g.kind == "energy"]
                guider_term = torch.zeros_like(x)
                if energies:
                    energy = sum(w * g.energy(records, step, self.num_steps) for g, w in energies)
                    (gradient,) = torch.autograd.grad(energy, z)
                    guider_term = gradient.detach()
            context = {"x": x, "x_inversion": self.inversion_latents[step], "eps_uncond": uncond["uncond"],
                       "eps_target": target["cur_trg"].detach()}
            cfg_term = self.cfg.weight(step, self.num_steps) * self.cfg.term(context)
            scale = self.rescaler(guider_term, cfg_term) if active else 1.0
            self.step += 1
            return (uncond["uncond"] + cfg_term + scale * guider_term).detach()

    import interpedit.editing.guide_and_rescale_edit as module

    original = module.GuidedDenoiser
    module.GuidedDenoiser = FourPasses
    try:
        yield
    finally:
        module.GuidedDenoiser = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="tiny", help="tiny, sd15, or a pipeline folder / hub id")
    parser.add_argument("--preset", default="non_style", choices=["non_style", "style"])
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50)
    add_run_arguments(parser, iterations=2, big_preset="sd15")
    args = parser.parse_args(argv)

    from contextlib import contextmanager

    from interpedit.editing import GuideAndRescaleEdit

    device = run_device(args)
    if refuses_big_preset_on_cpu(args, device, args.pipeline == "sd15", "the sd15 preset"):
        return 2

    with tempfile.TemporaryDirectory() as scratch:
        if args.pipeline == "tiny":
            from tests.tiny_components import write_tiny_sd

            folder, description = str(write_tiny_sd(Path(scratch) / "tiny")), "tiny random pipeline"
        elif args.pipeline == "sd15":
            from bench.diffedit import write_sd15_sized

            folder, description = str(write_sd15_sized(Path(scratch) / "sd15")), "random weights at SD 1.5's sizes"
        else:
            folder, description = args.pipeline, args.pipeline
        ours = GuideAndRescaleEdit(folder, preset=args.preset, num_inference_steps=args.steps).to(device)
        from_inversion = GuideAndRescaleEdit(folder, preset=args.preset, num_inference_steps=args.steps,
                                             reference="inversion")
        target_attention = GuideAndRescaleEdit(folder, preset=args.preset, num_inference_steps=args.steps,
                                               reference="inversion", attention_prompt="target")
        for other in (from_inversion, target_attention):
            other.vae, other.text_encoder, other.unet = ours.vae, ours.text_encoder, ours.unet
        side = args.resolution or (512 if args.pipeline == "sd15" else 64)
        image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
        batch = {"source_image": image, "source_prompt": [SOURCE], "target_prompt": [TARGET]}

        def run_reference():
            with contextmanager(reference_schedule)(ours):
                return ours(batch)["edited"]

        rows = {"(a) ours": lambda: ours(batch)["edited"],
                "(a') ours, reference from the inversion": lambda: from_inversion(batch)["edited"],
                "(a'') ours, target-prompt attention, from inversion": lambda: target_attention(batch)["edited"],
                "(b) reference schedule": run_reference}
        rounds = interleaved_rounds(rows, ours.unet, device, warmup=args.warmup, iterations=args.iterations)

    print("Guide-and-Rescale: one edit, our pass schedule against the reference's four passes at every step")
    print(f"  {description}, {side}x{side} px, preset {args.preset}, {args.steps} steps, {device_note(device)};"
          f" {args.warmup} warm-up + {args.iterations} timed rounds, interleaved")
    print()
    header = f"{'schedule':<52} {'median s':>9} {'fwd':>6} {'bwd':>5} {'calls':>6}"
    print(header + ("  peak GiB" if rounds.peaks else ""))
    for name in rows:
        cost = rounds.costs[name]
        line = f"{name:<52} {rounds.median(name):>9.2f} {cost.forwards:>6} {cost.backwards:>5} {cost.calls:>6}"
        print(line + (f"  {rounds.peaks[name]:8.2f}" if rounds.peaks else ""))
    reference = "(b) reference schedule"
    for name in [n for n in rows if n.startswith("(a")]:
        ratio = rounds.forwards(name) / rounds.forwards(reference)
        verdict = f" (aim <= {TARGET_FORWARD_RATIO}x: {'met' if ratio <= TARGET_FORWARD_RATIO else 'not met'})"
        difference = float((rounds.outputs[name] - rounds.outputs[reference]).abs().mean())
        print(f"{name}: forwards {ratio:.3f}x{verdict}, time {rounds.time_ratio(name, reference):.3f}x, "
              f"mean |edit difference| to (b) {difference:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
