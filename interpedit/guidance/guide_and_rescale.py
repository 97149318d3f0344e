"""The guided denoiser of Guide-and-Rescale (Titov et al., ECCV 2024), for the diffusion core's DDIM sampler.

At sampling step i, with the current latent z_t and the inversion latent z*_t of the same step:

    eps_hat = eps(z_t, "") + cfg + s * grad,   cfg = w (eps(z_t, target) - eps(z_t, "")),
    grad = d/dz_t sum_k weight_k(i) E_k + sum_j weight_j(i) term_j,   s = rescaler(grad, cfg)

with s one factor per image. The energies of a batch are sums of its images' energies, so a batch of images is
edited as each image would be alone.

The passes run as few and as batched as the active guiders allow:

- a step with no active guider makes one batched call, ``[uncond, cur_trg]``: plain CFG;
- a guided step makes one batched call without gradients (``uncond``, and ``cur_trg`` unless an energy needs its
  gradient), one for ``inv_src`` unless its records come from the inversion (a call of its own, shaped like the
  gradient pass: where the two latents are equal the compared maps then agree bit for bit, and the energy is
  exactly 0 rather than batching noise that the rescaling would blow up), and one call with gradients for the
  passes the energies differentiate (``cur_src``, ``cur_trg``), then one backward pass.

The reference code runs four separate passes at every step, guided or not. The guider term is added to the model's
output in its own parameterisation, which is Guide-and-Rescale exactly for epsilon-prediction models (SD 1.x, 2.x
base).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from interpedit.guidance.guiders import ClassifierFreeGuidance, Guider, PassRecorder
from interpedit.guidance.noise_rescaling import IdentityRescaler, RangeRescaler, image_norms

REFERENCES = ("exact", "inversion")


class GuidedDenoiser:
    """``denoise(x, t)`` for ``ddim_sample``; one call per sampling step, in order (module docstring).

    Args:
        unet: a ``UNet2DConditionModel``.
        source, target, uncond: (B, L, D) prompt embeddings.
        inversion_latents: (N + 1, B, ...) ``ddim_invert(...).latents``: entry i is at the level of step i.
        num_steps: N sampling steps.
        cfg: the classifier-free guidance guider.
        guiders: the other guiders.
        rescaler: ``RangeRescaler`` or ``IdentityRescaler``.
        inversion_records: ``{step: {pass "inv_src": records}}`` recorded during the inversion; the steps present
            skip the ``inv_src`` pass.
        gradient_checkpointing: checkpoint the UNet's blocks in the gradient pass.

    ``history`` gets one entry per step: the energy (summed over the batch), and per image the rescaling factor
    (``rescale``), the rescaled guider term's norm (``guider_norm``) and the CFG term's norm (``cfg_norm``).
    """

    def __init__(self, unet: nn.Module, source: Tensor, target: Tensor, uncond: Tensor, inversion_latents: Tensor,
                 num_steps: int, cfg: ClassifierFreeGuidance, guiders: Sequence[Guider],
                 rescaler: RangeRescaler | IdentityRescaler,
                 inversion_records: dict[int, dict[str, Tensor]] | None = None,
                 gradient_checkpointing: bool = False) -> None:
        self.unet = unet
        self.prompts = {"uncond": uncond, "cur_trg": target, "cur_src": source, "inv_src": source}
        self.inversion_latents = inversion_latents
        self.num_steps = num_steps
        self.cfg = cfg
        self.guiders = list(guiders)
        self.rescaler = rescaler
        self.recorder = PassRecorder(self.guiders)
        self.inversion_records = inversion_records or {}
        self.gradient_checkpointing = gradient_checkpointing
        self.step = 0
        self.history: list[dict[str, float]] = []

    def _call(self, entries: Sequence[str], x: Tensor, t: Tensor, record: bool, detach: bool):
        latents = [self.inversion_latents[self.step] if name == "inv_src" else x for name in entries]
        states = torch.cat([self.prompts[name] for name in entries])
        context = self.recorder.recording(self.unet, entries, detach) if record else nullcontext({})
        with context as records:
            out = self.unet(torch.cat(latents), t.repeat(len(entries)), encoder_hidden_states=states).sample
        return dict(zip(entries, out.chunk(len(entries)))), records

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        step = self.step
        active = [(g, w) for g in self.guiders if (w := g.weight(step, self.num_steps)) != 0]
        energies = [(g, w) for g, w in active if g.kind == "energy"]
        needs = {name for g, _ in energies for name in g.passes}
        graded = [name for name in ("cur_src", "cur_trg") if name in needs]
        plain = ["uncond"] + (["cur_trg"] if "cur_trg" not in graded else [])
        records: dict[str, dict[str, Tensor]] = {}
        with torch.no_grad():
            outputs, _ = self._call(plain, x, t, record=False, detach=True)
            if "inv_src" in needs:
                if step in self.inversion_records:
                    records["inv_src"] = self.inversion_records[step]
                else:
                    # A call of its own, shaped like the gradient pass it is compared with: where the current latent
                    # equals the inversion latent (step 0) the two give the same maps bit for bit, so the energy is
                    # exactly 0 and no batching noise gets rescaled up to the CFG term's norm.
                    _, reference = self._call(["inv_src"], x, t, record=True, detach=True)
                    records.update(reference)
        guider_term = torch.zeros_like(x)
        energy_value = 0.0
        if energies:
            z = x.detach().requires_grad_(True)
            checkpointing = self.gradient_checkpointing and not getattr(self.unet, "gradient_checkpointing", False)
            if checkpointing:
                self.unet.enable_gradient_checkpointing()
            try:
                with torch.enable_grad():
                    graded_outputs, graded_records = self._call(graded, z, t, record=True, detach=False)
                    records.update(graded_records)
                    energy = sum(w * g.energy(records, step, self.num_steps) for g, w in energies)
                    (gradient,) = torch.autograd.grad(energy, z)
            finally:
                if checkpointing:
                    self.unet.disable_gradient_checkpointing()
            guider_term = guider_term + gradient.detach()
            energy_value = float(energy.detach())
            if "cur_trg" in graded_outputs:
                outputs["cur_trg"] = graded_outputs["cur_trg"].detach()
        context = {"x": x, "x_inversion": self.inversion_latents[step], "eps_uncond": outputs["uncond"],
                   "eps_target": outputs["cur_trg"]}
        for guider, weight in active:
            if guider.kind == "gradient":
                guider_term = guider_term + weight * guider.term(context)
        cfg_term = self.cfg.weight(step, self.num_steps) * self.cfg.term(context)
        # One factor per image (``RangeRescaler``): each image's term is rescaled against its own CFG term.
        scale = (self.rescaler if active else IdentityRescaler())(guider_term, cfg_term)
        self.history.append({"step": step, "energy": energy_value, "rescale": scale.flatten().tolist(),
                             "guider_norm": image_norms(scale * guider_term).tolist(),
                             "cfg_norm": image_norms(cfg_term).tolist()})
        self.step += 1
        return (outputs["uncond"] + cfg_term + scale * guider_term).detach()
