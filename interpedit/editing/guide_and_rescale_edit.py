"""Guide-and-Rescale as an editing method: DDIM-invert the source with the source prompt, then denoise with the
target prompt, CFG and the preset's guiders, with noise rescaling (``interpedit.guidance``).

Presets, equivalent to the reference configs (``configs/ours_nonstyle_best.yaml``, ``ours_style_best.yaml``):

- ``non_style``: self-attention (3e5) plus appearance (500) on the source-prompt passes, the first 30 of 50 steps,
  rescaled into [0.33, 3.0] times the CFG term's norm;
- ``style``: self-attention (1e5) plus the feature map of ``up_blocks.1.resnets.1`` (2.5), the first 25 steps,
  rescaled into [1.5, 1.5].

Any preset value can be overridden; the method reads only the source image and the two prompts.
"""

from __future__ import annotations

from typing import Any

import torch

from interpedit.diffusion import ddim_invert, ddim_sample
from interpedit.editing.editing_method import EditOutput
from interpedit.editing.stable_diffusion_method import StableDiffusionMethod
from interpedit.guidance.guide_and_rescale import REFERENCES, GuidedDenoiser
from interpedit.guidance.guiders import (
    ClassifierFreeGuidance,
    FeatureMapL2,
    Guider,
    PassRecorder,
    SelfAttentionAppearance,
    SelfAttentionMapL2,
    StepSchedule,
)
from interpedit.guidance.noise_rescaling import IdentityRescaler, RangeRescaler
from interpedit.user_errors import OptionError

PRESETS: dict[str, dict[str, Any]] = {
    "non_style": {"guided_steps": 30, "self_attention_scale": 3e5, "appearance_scale": 500.0, "feature_scale": 0.0,
                  "rescale": (0.33, 3.0)},
    "style": {"guided_steps": 25, "self_attention_scale": 1e5, "appearance_scale": 0.0, "feature_scale": 2.5,
              "rescale": (1.5, 1.5)},
}


class GuideAndRescaleEdit(StableDiffusionMethod):
    """Guide-and-Rescale on any Stable Diffusion pipeline.

    Args:
        pipeline: hub id or folder.
        preset: ``non_style`` or ``style`` (module docstring).
        num_inference_steps: DDIM steps of the inversion and of the editing.
        guidance_scale: CFG scale (7.5).
        guided_steps: the first this many steps are guided (preset: 30 / 25).
        self_attention_scale, appearance_scale, feature_scale: the guiders' scales (preset values when None).
        rescale: ``[lower, upper]`` of the noise rescaling, or None for the preset's; ``identity_rescaling`` turns
            it off.
        attention_layers: ``fnmatch`` patterns of the self-attention layers compared (``*attn1``: all).
        feature_module: the feature guider's block.
        appearance_module: the appearance term's block (None: the last up block).
        reference: ``exact`` runs the inversion-latent pass at each guided step; ``inversion`` records it during
            the DDIM inversion instead (one UNet pass fewer per guided step; the inversion queries step i's
            timestep at the latent one level less noisy).
        gradient_checkpointing: checkpoint the UNet in the gradient pass (less memory, one more forward inside).
        attention_prompt: ``source`` compares the current latent's maps under the source prompt (published);
            ``target`` under the target prompt, beyond the paper: the CFG pass then carries the gradient, one UNet
            pass fewer per guided step.
        torch_dtype: dtype of the networks.
    """

    name = "guide_and_rescale"

    def __init__(self, pipeline: str, preset: str = "non_style", num_inference_steps: int = 50,
                 guidance_scale: float = 7.5, guided_steps: int | None = None,
                 self_attention_scale: float | None = None, appearance_scale: float | None = None,
                 feature_scale: float | None = None, rescale: tuple[float, float] | None = None,
                 identity_rescaling: bool = False, attention_layers: list[str] | None = None,
                 feature_module: str = "up_blocks.1.resnets.1", appearance_module: str | None = None,
                 reference: str = "exact", gradient_checkpointing: bool = False, attention_prompt: str = "source",
                 torch_dtype: str | None = None) -> None:
        super().__init__(pipeline, torch_dtype)
        if preset not in PRESETS:
            raise OptionError(f"GuideAndRescaleEdit.preset: {preset!r} is not one of {', '.join(PRESETS)}")
        if reference not in REFERENCES:
            raise OptionError(f"GuideAndRescaleEdit.reference: {reference!r} is not one of {', '.join(REFERENCES)}")
        if attention_prompt not in ("source", "target"):
            raise OptionError(f"GuideAndRescaleEdit.attention_prompt: {attention_prompt!r} is not source or target")
        if num_inference_steps < 1:
            raise OptionError(f"GuideAndRescaleEdit.num_inference_steps: must be >= 1, got {num_inference_steps}")
        settings = dict(PRESETS[preset])
        for key, value in (("guided_steps", guided_steps), ("self_attention_scale", self_attention_scale),
                           ("appearance_scale", appearance_scale), ("feature_scale", feature_scale),
                           ("rescale", rescale)):
            if value is not None:
                settings[key] = tuple(value) if key == "rescale" else value
        self.preset = preset
        self.settings = settings
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.reference = reference
        self.gradient_checkpointing = gradient_checkpointing
        last_up = f"up_blocks.{len(self.unet.up_blocks) - 1}"
        layers = tuple(attention_layers or ["*attn1"])
        schedule = StepSchedule(first=int(settings["guided_steps"]))
        self.cfg = ClassifierFreeGuidance(guidance_scale)
        current = "cur_src" if attention_prompt == "source" else "cur_trg"
        if attention_prompt == "target":
            self.name = "guide_and_rescale_target_attention"
        guiders: list[Guider] = []
        if settings["appearance_scale"]:
            guiders.append(SelfAttentionAppearance(settings["self_attention_scale"], settings["appearance_scale"],
                                                   schedule, layers, appearance_module or last_up,
                                                   current_pass=current))
        elif settings["self_attention_scale"]:
            guiders.append(SelfAttentionMapL2(settings["self_attention_scale"], schedule, layers, current))
        if settings["feature_scale"]:
            guiders.append(FeatureMapL2(settings["feature_scale"], schedule, feature_module))
        self.guiders = guiders
        lower, upper = settings["rescale"]
        self.rescaler = IdentityRescaler() if identity_rescaling else RangeRescaler(lower, upper)
        self.last_history: list[dict[str, float]] = []

    def invert(self, latents: torch.Tensor, source: torch.Tensor, timesteps: torch.Tensor):
        """DDIM inversion with the source prompt at guidance 1; with ``reference="inversion"`` it also records what
        the guiders compare at every guided step (``{step: records}``)."""
        base = self.denoiser(source, None, 1.0)
        count = len(timesteps)
        needed = {i for i in range(count) if any(g.weight(i, count) and "inv_src" in g.passes for g in self.guiders)}
        if self.reference != "inversion" or not needed:
            return ddim_invert(base, latents, timesteps, self.schedule), {}
        recorder = PassRecorder(self.guiders)
        records: dict[int, dict[str, torch.Tensor]] = {}
        calls = iter(range(count))

        def recording_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            step = count - 1 - next(calls)  # inversion call j queries sampling step N - 1 - j's timestep
            if step not in needed:
                return base(x, t)
            with recorder.recording(self.unet, ["inv_src"], detach=True) as recorded:
                out = base(x, t)
            records[step] = recorded
            return out

        inverted = ddim_invert(recording_denoiser, latents, timesteps, self.schedule)
        return inverted, {step: recorded["inv_src"] for step, recorded in records.items()}

    def forward(self, batch: dict[str, Any]) -> EditOutput:
        with torch.inference_mode(False):  # the guiders differentiate even inside an evaluation loop
            return self._edit(batch["source_image"].clone(), batch)

    def _edit(self, images: torch.Tensor, batch: dict[str, Any]) -> EditOutput:
        self.check_images(images)
        size = images.shape[0]
        timesteps = self.schedule.inference_timesteps(self.num_inference_steps, device=images.device)
        source = self.prompt_embeddings(batch["source_prompt"])
        target = self.prompt_embeddings(batch["target_prompt"])
        with torch.no_grad():
            latents = self.encode(images)
            inverted, inversion_records = self.invert(latents, source, timesteps)
        denoiser = GuidedDenoiser(self.unet, source, target, self.empty_prompt(size), inverted.latents,
                                  len(timesteps), self.cfg, self.guiders, self.rescaler, inversion_records,
                                  self.gradient_checkpointing)
        edited = ddim_sample(denoiser, inverted.x, timesteps, self.schedule)
        self.last_history = denoiser.history
        with torch.no_grad():
            return {"edited": self.decode(edited)}
