"""Bad settings of the text-driven methods and their helpers are refused with errors that name the field."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_components import tiny_shapes_sd_dir, tiny_unet2d_dir  # noqa: F401  (pytest fixtures)


def test_diffedit_and_ddim_inversion_settings(tiny_shapes_sd_dir):
    from interpedit.editing import DDIMInversionEdit, DiffEdit

    folder = str(tiny_shapes_sd_dir)
    with pytest.raises(ValueError, match="mask_encode_strength: 1.5 is outside"):
        DiffEdit(folder, mask_encode_strength=1.5)
    with pytest.raises(ValueError, match="num_maps_per_mask and num_inference_steps must be >= 1"):
        DiffEdit(folder, num_maps_per_mask=0)
    with pytest.raises(ValueError, match="mask_thresholding_ratio: must be positive"):
        DiffEdit(folder, mask_thresholding_ratio=0.0)
    with pytest.raises(ValueError, match="num_inference_steps: must be >= 1"):
        DDIMInversionEdit(folder, num_inference_steps=0)


def test_hspace_settings(tiny_unet2d_dir):
    from interpedit.backbones import tiny_unet2d
    from interpedit.hspace import FrequentDirections, HSpace, StreamingPCA

    with pytest.raises(ValueError, match="HSpace.place: 'bottom' is not one of before, middle, after"):
        HSpace(tiny_unet2d(), "bottom")
    with pytest.raises(ValueError, match="ell must be >= 1"):
        FrequentDirections(8, ell=0)
    with pytest.raises(ValueError, match="rows of width 4 for a sketch of width 8"):
        FrequentDirections(8, ell=2).update(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        FrequentDirections(8, ell=2).principal(1)
    pca = StreamingPCA(2, (2, 2), ell=4)
    with pytest.raises(ValueError, match=r"expected \(2, B, \*\(2, 2\)\)"):
        pca.update(torch.zeros(3, 1, 2, 2))
    with pytest.raises(ValueError, match="global_pca=False"):
        StreamingPCA(2, (2, 2), global_pca=False).global_directions(1)


def test_direction_discovery_and_seed_settings(tiny_unet2d_dir):
    from datamodules.noise_seeds import NoiseSeedsDataModule
    from lightning_modules.direction_discovery import DirectionDiscoveryModule

    with pytest.raises(ValueError, match="method: 'ica' is not one of pca, supervised, jacobian"):
        DirectionDiscoveryModule(str(tiny_unet2d_dir), method="ica")
    with pytest.raises(ValueError, match="num_samples and batch_size must be >= 1"):
        NoiseSeedsDataModule(num_samples=0)


def test_trajectory_shapes_are_checked(tiny_unet2d_dir):
    from interpedit.backbones import sd_ddim_scheduler, tiny_unet2d
    from interpedit.diffusion import NoiseSchedule
    from interpedit.hspace import HSpace, apply_direction, regenerate, sample_trajectory

    hspace = HSpace(tiny_unet2d(sample_size=8).eval())
    schedule = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
    trajectory = sample_trajectory(hspace, schedule, [501, 1], torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="delta_h of shape"):
        regenerate(hspace, schedule, trajectory, torch.zeros(1, 3, *trajectory.hs.shape[2:]))
    with pytest.raises(ValueError, match="direction has 3 steps for a trajectory of 2"):
        apply_direction(hspace, schedule, trajectory, torch.zeros(3, *trajectory.hs.shape[2:]), 1.0)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        sample_trajectory(hspace, schedule, [501, 1], torch.randn(1, 3, 8, 8), eta=-1.0)


def test_learnable_regions_component_inputs():
    from interpedit.learnable_regions import AnchorNet, anchor_boxes, anchor_points, leave_one_out_advantages

    with pytest.raises(ValueError, match="attention must be"):
        anchor_points(torch.zeros(4, 4), 1, 0)
    with pytest.raises(ValueError, match="border must be >= 0"):
        anchor_points(torch.zeros(1, 4, 4), 1, -1)
    with pytest.raises(ValueError, match="half_sizes must be a non-empty list"):
        anchor_boxes(torch.zeros(1, 1, 2, dtype=torch.long), [], (4, 4))
    with pytest.raises(ValueError, match="num_sizes must be >= 1"):
        AnchorNet(8, 0)
    with pytest.raises(ValueError, match="at least 2 draws"):
        leave_one_out_advantages(torch.zeros(3, 1))
