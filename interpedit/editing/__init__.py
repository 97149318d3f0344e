"""Editing methods behind one interface: ``method(batch) -> {"edited", "edit_region"?}``."""

from interpedit.editing.ddim_inversion_edit import DDIMInversionEdit
from interpedit.editing.diffedit import DiffEdit
from interpedit.editing.editing_method import EditingMethod, EditOutput
from interpedit.editing.guide_and_rescale_edit import GuideAndRescaleEdit
from interpedit.editing.hspace_edit import HSpaceEdit
from interpedit.editing.hspace_jacobian_edit import HSpaceJacobianEdit
from interpedit.editing.identity import IdentityEdit
from interpedit.editing.learnable_regions_edit import LearnableRegionsEdit
from interpedit.editing.oracle import OracleEdit
from interpedit.editing.region_autoencoder_edit import RegionAutoencoderEdit
from interpedit.editing.stable_diffusion_method import StableDiffusionMethod

__all__ = [
    "DDIMInversionEdit",
    "DiffEdit",
    "EditOutput",
    "EditingMethod",
    "GuideAndRescaleEdit",
    "HSpaceEdit",
    "HSpaceJacobianEdit",
    "IdentityEdit",
    "LearnableRegionsEdit",
    "OracleEdit",
    "RegionAutoencoderEdit",
    "StableDiffusionMethod",
]
