"""Guiders of Guide-and-Rescale: terms added to the noise prediction at chosen steps.

A guider is one of two kinds:

- **gradient**: it returns a noise-shaped term itself (``term(context)``): classifier-free guidance, the latent
  difference;
- **energy**: it returns a scalar (``energy(records)``) that the sampler backpropagates to the current latent:
  feature-map L2, self-attention-map L2, self-attention plus appearance. On a batch the energy is the sum of each
  image's energy (the means below are taken per image), so every image gets the gradient it would get alone, as in
  the reference, which edits one image at a time.

Each declares the UNet passes it compares, out of ``PASSES``:

- ``cur_src``: the current latent with the source prompt;
- ``inv_src``: the inversion latent of the same step with the source prompt;
- ``cur_trg``: the current latent with the target prompt;

and what it reads from them (``attention_layers``: self-attention probabilities, ``feature_modules``: block
outputs), which ``PassRecorder`` captures through ``interpedit.diffusion.unet_hooks`` during those passes only and
hands over per pass, then clears. A per-step weight (``StepSchedule``: every step, the first n or the last n) scales
each guider; a guider with weight 0 at a step costs nothing there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from interpedit.diffusion.unet_hooks import capture_attention, capture_outputs

PASSES = ("cur_src", "inv_src", "cur_trg")


def summed_image_means(values: Tensor) -> Tensor:
    """``sum over images of mean(values[i])`` for a (B, ...) tensor: a batch's energy as the sum of its images'."""
    return values.flatten(1).mean(dim=1).sum()


@dataclass(frozen=True)
class StepSchedule:
    """Where a guider is on: ``first`` n steps, ``last`` n steps, or every step (both None)."""

    first: int | None = None
    last: int | None = None

    def __post_init__(self) -> None:
        if self.first is not None and self.last is not None:
            raise ValueError("StepSchedule: give first or last, not both")
        for name in ("first", "last"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"StepSchedule.{name} must be >= 0, got {value}")

    def on(self, step: int, num_steps: int) -> bool:
        if self.first is not None:
            return step < self.first
        if self.last is not None:
            return step >= num_steps - self.last
        return True


class Guider:
    """Base class (module docstring). ``scale`` times the schedule is the guider's weight at a step."""

    kind = "energy"
    passes: tuple[str, ...] = ()
    attention_layers: tuple[str, ...] = ()
    feature_modules: tuple[str, ...] = ()

    def __init__(self, scale: float = 1.0, schedule: StepSchedule | None = None) -> None:
        self.scale = float(scale)
        self.schedule = schedule or StepSchedule()

    def weight(self, step: int, num_steps: int) -> float:
        return self.scale if self.scale != 0 and self.schedule.on(step, num_steps) else 0.0

    def energy(self, records: dict[str, dict[str, Tensor]], step: int, num_steps: int) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is a {self.kind} guider")

    def term(self, context: dict[str, Any]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is a {self.kind} guider")


class ClassifierFreeGuidance(Guider):
    """``scale * (eps(z_t, target) - eps(z_t, ""))``; the reference of the noise rescaling."""

    kind = "gradient"

    def term(self, context: dict[str, Any]) -> Tensor:
        return context["eps_target"] - context["eps_uncond"]


class LatentDifference(Guider):
    """The gradient of ``||z_t - z*_t||^2``: ``2 (z_t - z*_t)``."""

    kind = "gradient"

    def term(self, context: dict[str, Any]) -> Tensor:
        return 2 * (context["x"] - context["x_inversion"])


class FeatureMapL2(Guider):
    """``mean((F(z_t, target) - F(z*_t, source))^2)`` of one block's output (default SD's
    ``up_blocks.1.resnets.1``)."""

    passes = ("cur_trg", "inv_src")

    def __init__(self, scale: float = 1.0, schedule: StepSchedule | None = None,
                 module: str = "up_blocks.1.resnets.1") -> None:
        super().__init__(scale, schedule)
        self.module = module
        self.feature_modules = (module,)

    def energy(self, records: dict[str, dict[str, Tensor]], step: int, num_steps: int) -> Tensor:
        key = f"feature:{self.module}"
        return summed_image_means((records["cur_trg"][key] - records["inv_src"][key]) ** 2)


def attention_energy(records: dict[str, dict[str, Tensor]], current_pass: str = "cur_src") -> Tensor:
    """``sum over layers of mean((A(z_t, prompt) - A(z*_t, source))^2)``, the current pass ``cur_src`` (the
    published guiders) or ``cur_trg``."""
    current, reference = records[current_pass], records["inv_src"]
    terms = [summed_image_means((current[key] - reference[key]) ** 2)
             for key in current if key.startswith("attention:")]
    if not terms:
        raise ValueError("no self-attention maps were recorded: the layer patterns match no self-attention layer")
    return torch.stack(terms).sum()


def _check_current(current_pass: str) -> str:
    if current_pass not in ("cur_src", "cur_trg"):
        raise ValueError(f"the current pass must be cur_src or cur_trg, got {current_pass!r}")
    return current_pass


class SelfAttentionMapL2(Guider):
    """Self-attention probabilities of the current and the inversion latent, both with the source prompt.

    Args:
        layers: ``fnmatch`` patterns of attention layers (default every self-attention layer, ``*attn1``).
        current_pass: ``cur_src`` (published) or ``cur_trg``: the current latent's maps under the target prompt,
            beyond the paper, which lets the CFG pass carry the gradient (one UNet pass fewer per guided step).
    """

    def __init__(self, scale: float = 1.0, schedule: StepSchedule | None = None,
                 layers: Sequence[str] = ("*attn1",), current_pass: str = "cur_src") -> None:
        super().__init__(scale, schedule)
        self.attention_layers = tuple(layers)
        self.current_pass = _check_current(current_pass)
        self.passes = (self.current_pass, "inv_src")

    def energy(self, records: dict[str, dict[str, Tensor]], step: int, num_steps: int) -> Tensor:
        return attention_energy(records, self.current_pass)


class SelfAttentionAppearance(Guider):
    """The 'non-style' guider: ``attention_scale * SelfAttentionMapL2 + appearance_scale * mean|F_cur - F_inv|``,
    both on the source-prompt passes; F is the output of the last up block (the reference's ``new_features``).

    ``scale`` multiplies both terms (the reference's g_scale, 1). ``current_pass`` as for ``SelfAttentionMapL2``.
    """

    def __init__(self, attention_scale: float = 3e5, appearance_scale: float = 500.0,
                 schedule: StepSchedule | None = None, layers: Sequence[str] = ("*attn1",),
                 appearance_module: str = "up_blocks.3", scale: float = 1.0, current_pass: str = "cur_src") -> None:
        super().__init__(scale, schedule)
        self.current_pass = _check_current(current_pass)
        self.passes = (self.current_pass, "inv_src")
        self.attention_scale = float(attention_scale)
        self.appearance_scale = float(appearance_scale)
        self.attention_layers = tuple(layers)
        self.appearance_module = appearance_module
        self.feature_modules = (appearance_module,)

    def energy(self, records: dict[str, dict[str, Tensor]], step: int, num_steps: int) -> Tensor:
        key = f"feature:{self.appearance_module}"
        appearance = summed_image_means((records[self.current_pass][key] - records["inv_src"][key]).abs())
        return (self.attention_scale * attention_energy(records, self.current_pass)
                + self.appearance_scale * appearance)


class PassRecorder:
    """Captures what the given guiders read, for the entries of one batched UNet call.

    ``with recorder.recording(unet, entries, detach) as records:`` around a call whose batch is the concatenation
    of ``entries`` (pass names, each of one sample batch of size B); afterwards ``records[pass]`` maps
    ``attention:<layer>`` to (B, heads, q, k) and ``feature:<module>`` to (B, C, H, W). The hooks are removed
    when the context closes.
    """

    def __init__(self, guiders: Sequence[Guider]) -> None:
        self.attention_layers = sorted({p for g in guiders for p in g.attention_layers})
        self.feature_modules = sorted({m for g in guiders for m in g.feature_modules})

    @contextmanager
    def recording(self, unet: nn.Module, entries: Sequence[str], detach: bool) -> Iterator[dict[str, dict]]:
        records: dict[str, dict[str, Tensor]] = {name: {} for name in entries}
        with ExitStack() as stack:
            maps = (stack.enter_context(capture_attention(unet, self.attention_layers, kind="self", detach=detach))
                    if self.attention_layers else None)
            features = (stack.enter_context(capture_outputs(unet, self.feature_modules, detach=detach))
                        if self.feature_modules else None)
            yield records
            count = len(entries)
            if maps is not None:
                for layer, calls in maps.items():
                    for name, chunk in zip(entries, calls[-1].chunk(count)):
                        records[name][f"attention:{layer}"] = chunk
                maps.clear()
            if features is not None:
                for module, calls in features.items():
                    for name, chunk in zip(entries, calls[-1].chunk(count)):
                        records[name][f"feature:{module}"] = chunk
                    calls.clear()
