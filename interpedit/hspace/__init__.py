"""h-space directions (Haas et al., FG 2024): the UNet bottleneck read and offset through hooks, trajectories that
regenerate exactly, DDIM and edit-friendly DDPM inversion, streaming per-timestep PCA, Jacobian singular vectors by
block iteration, and supervised mean-difference directions with projection."""

from interpedit.hspace.h_space import H_SPACE_PLACES, HSpace
from interpedit.hspace.jacobian import (
    JacobianDirections,
    SingularVectors,
    block_singular_vectors,
    jacobian_cache_key,
    jacobian_directions,
    power_iteration,
)
from interpedit.hspace.pca import FrequentDirections, PrincipalDirections, StreamingPCA
from interpedit.hspace.supervised import group_difference, mean_difference, project_away
from interpedit.hspace.trajectory import (
    HTrajectory,
    apply_direction,
    ddim_inversion,
    ddpm_inversion,
    regenerate,
    sample_trajectory,
)

__all__ = [
    "FrequentDirections",
    "HSpace",
    "HTrajectory",
    "H_SPACE_PLACES",
    "JacobianDirections",
    "PrincipalDirections",
    "SingularVectors",
    "StreamingPCA",
    "apply_direction",
    "block_singular_vectors",
    "ddim_inversion",
    "ddpm_inversion",
    "group_difference",
    "jacobian_cache_key",
    "jacobian_directions",
    "mean_difference",
    "power_iteration",
    "project_away",
    "regenerate",
    "sample_trajectory",
]
