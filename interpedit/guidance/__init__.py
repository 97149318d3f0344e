"""Guide-and-Rescale's guidance (Titov et al., ECCV 2024): guiders that add a gradient-like term or an energy's
gradient to the noise prediction, noise rescaling against the CFG term, and the guided denoiser that runs only the
passes the active guiders need, batched."""

from interpedit.guidance.guide_and_rescale import REFERENCES, GuidedDenoiser
from interpedit.guidance.guiders import (
    PASSES,
    ClassifierFreeGuidance,
    FeatureMapL2,
    Guider,
    LatentDifference,
    PassRecorder,
    SelfAttentionAppearance,
    SelfAttentionMapL2,
    StepSchedule,
)
from interpedit.guidance.noise_rescaling import IdentityRescaler, RangeRescaler

__all__ = [
    "PASSES",
    "REFERENCES",
    "ClassifierFreeGuidance",
    "FeatureMapL2",
    "GuidedDenoiser",
    "Guider",
    "IdentityRescaler",
    "LatentDifference",
    "PassRecorder",
    "RangeRescaler",
    "SelfAttentionAppearance",
    "SelfAttentionMapL2",
    "StepSchedule",
]
