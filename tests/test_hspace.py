"""h-space: hooks at three places on both UNet classes, exact regeneration, inversions, streaming PCA, Jacobian
singular vectors against a dense SVD, the cache key, supervised directions."""

from __future__ import annotations

import pytest
import torch

from interpedit.backbones import sd_ddim_scheduler, tiny_unet2d, tiny_unet2d_condition
from interpedit.diffusion import NoiseSchedule
from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.hspace import (
    FrequentDirections,
    HSpace,
    StreamingPCA,
    apply_direction,
    block_singular_vectors,
    ddim_inversion,
    ddpm_inversion,
    jacobian_cache_key,
    mean_difference,
    power_iteration,
    project_away,
    regenerate,
    sample_trajectory,
)
from interpedit.hspace.jacobian import JacobianProducts

SCHEDULE = NoiseSchedule.from_scheduler(sd_ddim_scheduler())
STEPS = [801, 601, 401, 201, 1]


def pixel_hspace(place="after", size=16):
    return HSpace(tiny_unet2d(sample_size=size, seed=0).eval().requires_grad_(False), place)


def latent_hspace(place="after"):
    unet = tiny_unet2d_condition(sample_size=8, cross_attention_dim=8, seed=0).eval().requires_grad_(False)
    return HSpace(unet, place, encoder_hidden_states=torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("place", ["before", "middle", "after"])
@pytest.mark.parametrize("make", [pixel_hspace, latent_hspace])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_regeneration_without_offset_reproduces_the_sample_exactly(place, make, eta):
    hspace = make(place)
    channels, size = hspace.unet.config.in_channels, hspace.unet.config.sample_size
    x_T = torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectory(hspace, SCHEDULE, STEPS, x_T, eta=eta, generator=torch.Generator().manual_seed(2))
    assert trajectory.hs.shape[:2] == (len(STEPS), 3) and (trajectory.noises is None) == (eta == 0)
    assert torch.equal(regenerate(hspace, SCHEDULE, trajectory), trajectory.x0)
    zero = torch.zeros(1, len(STEPS), *trajectory.hs.shape[2:])
    assert torch.equal(regenerate(hspace, SCHEDULE, trajectory, zero)[0], trajectory.x0)
    # An offset changes the sample; several edits of several samples run as one batch.
    direction = torch.randn(len(STEPS), *trajectory.hs.shape[2:], generator=torch.Generator().manual_seed(3))
    with count_unet_calls(hspace.unet) as cost:
        swept = apply_direction(hspace, SCHEDULE, trajectory, direction, scales=[0.0, 2.0])
    assert swept.shape == (2, *x_T.shape) and cost.calls == len(STEPS) and cost.forwards == 2 * 3 * len(STEPS)
    torch.testing.assert_close(swept[0], trajectory.x0, rtol=1e-5, atol=1e-5)
    assert (swept[1] - trajectory.x0).abs().max() > 1e-3


def test_a_window_limits_the_offset_to_some_steps():
    hspace = pixel_hspace()
    x_T = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    trajectory = sample_trajectory(hspace, SCHEDULE, STEPS, x_T)
    direction = torch.ones(*trajectory.hs.shape[2:])
    with hspace.recording() as hs:
        apply_direction(hspace, SCHEDULE, trajectory, direction, 1.0, window=(1, 2))
    # Step 0 is outside the window: its h is the original one exactly.
    assert torch.equal(hs[0], trajectory.hs[0])
    assert not torch.equal(hs[3], trajectory.hs[3])  # later steps follow the edited path
    with pytest.raises(ValueError, match="window"):
        apply_direction(hspace, SCHEDULE, trajectory, direction, 1.0, window=(2, 9))


def test_ddpm_inversion_replays_through_the_image_and_ddim_inversion_round_trips():
    hspace = pixel_hspace()
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    friendly = ddpm_inversion(hspace, SCHEDULE, x0, STEPS, eta=1.0, generator=torch.Generator().manual_seed(5))
    replay = regenerate(hspace, SCHEDULE, friendly)
    # SD's schedule ends at alpha-bar(0) < 1, so even the last step has noise to solve for: the replay ends at x0.
    torch.testing.assert_close(replay, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(friendly.x0, x0, rtol=1e-4, atol=1e-4)
    assert friendly.noises.shape == (len(STEPS), *x0.shape)
    inverted = ddim_inversion(hspace, SCHEDULE, x0, STEPS)
    assert inverted.hs.shape[:2] == (len(STEPS), 2) and inverted.noises is None
    back = regenerate(hspace, SCHEDULE, inverted)
    assert (back - x0).abs().mean() < (friendly.x_T - x0).abs().mean()  # a rough round trip, not noise
    with pytest.raises(ValueError, match="eta > 0"):
        ddpm_inversion(hspace, SCHEDULE, x0, STEPS, eta=0.0)


def test_frequent_directions_is_exact_with_enough_rows_and_close_with_fewer():
    generator = torch.Generator().manual_seed(6)
    basis = torch.linalg.qr(torch.randn(40, 40, generator=generator))[0][:, :3]
    data = torch.randn(300, 3, generator=generator) * torch.tensor([5.0, 3.0, 2.0]) @ basis.T
    data = data + 0.05 * torch.randn(300, 40, generator=generator) + 1.0  # an offset mean
    centred = data - data.mean(0)
    _, singular, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    exact = FrequentDirections(40, ell=300)
    small = FrequentDirections(40, ell=12)
    for chunk in data.split(32):
        exact.update(chunk)
        small.update(chunk)
    for sketch, tolerance in ((exact, 1e-8), (small, 0.05)):
        directions, std = sketch.principal(3)
        torch.testing.assert_close(std, singular[:3] / (300 - 1) ** 0.5, rtol=tolerance, atol=tolerance)
        overlap = (directions @ vh[:3].T).abs().diagonal()
        assert bool((overlap > 1 - tolerance).all()), overlap


def test_streaming_pca_per_timestep_and_global_shapes_and_units():
    steps, h_shape = 4, (2, 3, 3)
    pca = StreamingPCA(steps, h_shape, ell=64)
    generator = torch.Generator().manual_seed(7)
    for _ in range(3):
        pca.update(torch.randn(steps, 16, *h_shape, generator=generator) * 2.0)
    per_step = pca.per_timestep(2)
    assert per_step.directions.shape == (2, steps, *h_shape) and per_step.std.shape == (2, steps)
    norms = per_step.directions.flatten(2).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert per_step.offset(0).shape == (steps, *h_shape) and pca.count == 48
    overall = pca.global_directions(2)
    torch.testing.assert_close(overall.directions.flatten(1).norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize("masked", [False, True])
def test_jacobian_vectors_match_a_dense_svd_and_block_iteration_needs_fewer_passes(masked):
    hspace = pixel_hspace(size=8)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    mask = None
    if masked:
        mask = torch.zeros(1, 3, 8, 8)
        mask[..., :4, :] = 1.0
    h_shape = hspace.h_shape(x)
    dim = int(torch.tensor(h_shape).prod())
    dense = JacobianProducts(hspace, x, 401, mask, dim, h_shape)
    jacobian = dense.jvp(torch.eye(dim).reshape(dim, *h_shape)).reshape(dim, -1).T.double()  # (out, h)
    _, singular, vh = torch.linalg.svd(jacobian, full_matrices=False)
    block = block_singular_vectors(hspace, x, 401, k=3, mask=mask, tol=1e-7, max_iterations=300,
                                   generator=torch.Generator().manual_seed(0), h_shape=h_shape)
    power = power_iteration(hspace, x, 401, k=3, mask=mask, tol=1e-7, max_iterations=300,
                            generator=torch.Generator().manual_seed(0), h_shape=h_shape)
    for result in (block, power):
        torch.testing.assert_close(result.values.double(), singular[:3], rtol=1e-3, atol=1e-6)
        overlap = (result.vectors.reshape(3, -1).double() @ vh[:3].T).abs().diagonal()
        assert bool((overlap > 0.999).all()), overlap
    assert block.passes * 3 <= power.passes, (block.passes, power.passes)


def test_the_cache_key_changes_with_the_mask_and_the_trajectory():
    hspace = pixel_hspace(size=8)
    x_T = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    trajectory = sample_trajectory(hspace, SCHEDULE, STEPS, x_T, eta=1.0, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 3, 8, 8)
    mask[..., :4] = 1
    other = torch.zeros(1, 3, 8, 8)
    other[..., 4:] = 1
    keys = {jacobian_cache_key(hspace, trajectory, m, 3, 2, 1e-4, 100) for m in (None, mask, other)}
    assert len(keys) == 3
    again = sample_trajectory(hspace, SCHEDULE, STEPS, x_T, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert jacobian_cache_key(hspace, again, mask, 3, 2, 1e-4, 100) != jacobian_cache_key(
        hspace, trajectory, mask, 3, 2, 1e-4, 100)  # other stored noises: another trajectory
    assert jacobian_cache_key(hspace, trajectory, mask, 3, 2, 1e-4, 100) == jacobian_cache_key(
        hspace, trajectory, mask.clone(), 3, 2, 1e-4, 100)


def test_supervised_mean_difference_and_projection():
    hs = torch.zeros(2, 6, 3)
    hs[:, :3, 0] = 1.0  # the three top-scored samples are high on axis 0
    hs[:, :, 1] = torch.arange(6.0)  # axis 1 follows another attribute
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    direction = mean_difference(hs, scores, k=3)
    assert direction.shape == (2, 3)
    torch.testing.assert_close(direction[:, 0], torch.ones(2))
    other = torch.zeros(2, 3)
    other[:, 1] = 1.0
    projected = project_away(direction, [other])
    assert abs(float((projected * other).sum())) < 1e-6
    torch.testing.assert_close(projected[:, 0], direction[:, 0])
    with pytest.raises(ValueError, match="k must be in 1..3"):
        mean_difference(hs, scores, k=4)


def test_explained_variance_from_streamed_sums_equals_the_direct_ratio():
    from interpedit.hspace.supervised import explained_variance

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (200,), generator=generator)
    hs = torch.randn(3, 200, 4, 4, generator=generator)
    hs[0, :, 0, 0] += 3 * labels.float()  # step 0 carries the label strongly, the others not at all
    sums = torch.stack([hs[:, labels == c].sum(1) for c in range(4)])
    counts = torch.bincount(labels, minlength=4)
    squares = (hs.flatten(2) ** 2).sum(-1).sum(1)
    ratio, chance = explained_variance(sums, counts, squares)
    centred = hs.flatten(2) - hs.flatten(2).mean(1, keepdim=True)
    between = sum(int((labels == c).sum()) * (hs[:, labels == c].flatten(2).mean(1)
                                              - hs.flatten(2).mean(1)).pow(2).sum(-1) for c in range(4))
    torch.testing.assert_close(ratio, (between / centred.pow(2).sum((1, 2))).float(), rtol=1e-5, atol=1e-6)
    assert chance == pytest.approx(3 / 199)
    assert ratio[0] > 0.3 and ratio[1:].max() < 5 * chance
    with pytest.raises(ValueError, match="two labelled classes"):
        explained_variance(sums, torch.tensor([200, 0, 0, 0]), squares)
