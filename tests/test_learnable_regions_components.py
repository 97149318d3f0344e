"""Learnable Regions components: anchors land on attention peaks, boxes are not transposed, ROI features read the
right cells, AnchorNet's shapes, the REINFORCE estimator, views, ranking."""

from __future__ import annotations

import pytest
import torch

from interpedit.backbones import tiny_vit
from interpedit.learnable_regions import (
    AnchorNet,
    ViewAugmentation,
    anchor_boxes,
    anchor_points,
    box_masks,
    cls_attention,
    draw_sizes,
    leave_one_out_advantages,
    rank_candidates,
    reinforce_loss,
    roi_features,
)


def test_a_known_off_diagonal_peak_gives_that_anchor_and_an_untransposed_box():
    attention = torch.zeros(1, 16, 16)
    attention[0, 4, 11] = 1.0  # row 4, column 11: far from the diagonal, so a transposed box would miss it
    attention[0, 9, 6] = 0.5
    anchors = anchor_points(attention, num_points=2, border=2)
    assert anchors[0].tolist() == [[4, 11], [9, 6]]
    boxes = anchor_boxes(anchors, half_sizes=[1], grid=(16, 16))
    assert boxes[0, 0, 0].tolist() == [10.0, 3.0, 13.0, 6.0]  # x from the column, y from the row
    mask = box_masks(boxes[0, 0, 0], grid=(16, 16), size=(64, 64))
    rows, cols = mask.nonzero(as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 23, 40, 51)  # cells 3-5 down, 10-12 across
    peak_pixel = (4 * 4 + 2, 11 * 4 + 2)  # the peak cell's centre in pixels
    assert mask[peak_pixel] and not mask[peak_pixel[1], peak_pixel[0]]


def test_border_cells_are_skipped_and_shortfalls_filled_without_repeats():
    attention = torch.arange(36, dtype=torch.float32).reshape(1, 6, 6)  # the highest cells are at the bottom right
    anchors = anchor_points(attention, num_points=3, border=2)
    # Only cells 2..3 on each axis pass a border of 2: (3, 3), (3, 2), (2, 3) in attention order.
    assert anchors[0].tolist() == [[3, 3], [3, 2], [2, 3]]
    filled = anchor_points(attention, num_points=6, border=2)[0].tolist()
    assert filled[:4] == [[3, 3], [3, 2], [2, 3], [2, 2]] and filled[4:] == [[5, 5], [5, 4]]
    assert len({tuple(a) for a in filled}) == 6
    with pytest.raises(ValueError, match="num_points must be in 1..36"):
        anchor_points(attention, num_points=37, border=0)


def test_anchor_spacing_spreads_anchors_over_separate_peaks():
    attention = torch.full((1, 16, 16), 0.01)
    attention[0, 9:12, 3:6] = torch.tensor([[0.5, 0.8, 0.5], [0.8, 1.0, 0.8], [0.5, 0.8, 0.5]])  # a strong blob
    attention[0, 3, 12] = 0.2  # a weaker, separate object
    # The released top-k puts every anchor on the strong blob and misses the second object.
    assert [3, 12] not in anchor_points(attention, num_points=3, border=1)[0].tolist()
    spaced = anchor_points(attention, num_points=3, border=1, spacing=3)[0].tolist()
    assert spaced[:2] == [[10, 4], [3, 12]]
    assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 3 for i, a in enumerate(spaced) for b in spaced[:i])
    # With too few spaced cells, the suppressed cells fill the list in attention order, without repeats.
    crowded = anchor_points(attention[:, :5, :5], num_points=4, border=0, spacing=5)[0].tolist()
    assert crowded[0] == [0, 0] and len({tuple(a) for a in crowded}) == 4
    with pytest.raises(ValueError, match="spacing must be >= 0"):
        anchor_points(attention, num_points=3, border=1, spacing=-1)


def test_cls_attention_matches_timm_attention_probabilities():
    vit = tiny_vit(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2).eval()
    images = torch.rand(2, 3, 32, 32)
    captured = {}

    module = vit.blocks[-1].attn
    handle = module.register_forward_hook(lambda _m, inputs, _o: captured.setdefault("x", inputs[0]))
    with torch.no_grad():
        attention = cls_attention(vit, images)
        handle.remove()
        x = captured["x"]
        qkv = module.qkv(x).reshape(*x.shape[:2], 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = module.q_norm(qkv[0]), module.k_norm(qkv[1])
        captured["probabilities"] = ((q * module.scale) @ k.transpose(-2, -1)).softmax(-1)
    expected = captured["probabilities"][:, :, 0, 1:].mean(1).reshape(2, 8, 8)
    torch.testing.assert_close(attention, expected)


def test_roi_features_read_the_boxed_cells_with_sizes_on_channels():
    features = torch.zeros(1, 2, 8, 8)
    features[0, 0] = torch.arange(8.0)[None, :].expand(8, 8)  # channel 0 is the column index
    features[0, 1] = torch.arange(8.0)[:, None].expand(8, 8)  # channel 1 is the row index
    anchors = torch.tensor([[[1, 6], [5, 2]]])  # (row, col)
    boxes = anchor_boxes(anchors, half_sizes=[0, 1], grid=(8, 8))
    crops = roi_features(features, boxes, output_size=2)
    assert crops.shape == (2, 4, 2, 2)
    # Anchor 0 at (row 1, col 6), size 0: its one cell holds column 6 (channel 0) and row 1 (channel 1).
    torch.testing.assert_close(crops[0, 0].mean(), torch.tensor(6.0), atol=0.3, rtol=0)
    torch.testing.assert_close(crops[0, 1].mean(), torch.tensor(1.0), atol=0.3, rtol=0)
    # Anchor 1, size 1 (channels 2-3): the 3x3 cells around (row 5, col 2) average to column 2 and row 5.
    torch.testing.assert_close(crops[1, 2].mean(), torch.tensor(2.0), atol=0.3, rtol=0)
    torch.testing.assert_close(crops[1, 3].mean(), torch.tensor(5.0), atol=0.3, rtol=0)


def test_anchor_net_projects_features_and_outputs_size_logits_per_anchor():
    net = AnchorNet(in_channels=32, num_sizes=3, feature_dim=12)
    assert net.project(torch.randn(2, 32, 16, 16)).shape == (2, 12, 16, 16)
    assert net(torch.randn(5, 36, 8, 8)).shape == (5, 3)
    assert sum(p.numel() for p in net.parameters()) < 2000  # tiny, as in the paper
    with pytest.raises(ValueError, match="expects 36 channels"):
        net(torch.randn(5, 24, 8, 8))


def test_leave_one_out_advantages_and_the_reinforce_gradient_raise_the_expected_reward():
    rewards = torch.tensor([[1.0, 2.0, 6.0]])
    assert leave_one_out_advantages(rewards).tolist() == [[1 - 4.0, 2 - 3.5, 6 - 1.5]]
    # A bandit: size 2 of 3 pays 1, the others 0. Plain REINFORCE steps on the logits raise the expected reward.
    logits = torch.zeros(4, 3, requires_grad=True)
    optimiser = torch.optim.SGD([logits], lr=1.0)
    generator = torch.Generator().manual_seed(0)
    expected = []
    for _ in range(80):
        sizes = draw_sizes(logits, draws=4, generator=generator)
        rewards = (sizes == 2).float()
        log_probs = torch.log_softmax(logits, -1).gather(1, sizes)
        optimiser.zero_grad()
        reinforce_loss(log_probs, rewards).backward()
        optimiser.step()
        expected.append(float(logits.detach().softmax(-1)[:, 2].mean()))
    assert expected[0] < 0.5 < 0.9 < expected[-1]


def test_views_share_parameters_across_images_and_view_zero_is_the_image():
    augment = ViewAugmentation(num_views=5)
    parameters = augment.sample(torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 16, 16)
    views = augment.apply(images, parameters)
    assert views.shape == (2, 5, 3, 16, 16) and 0 <= views.min() and views.max() <= 1
    torch.testing.assert_close(views[:, 0], images, atol=1e-5, rtol=0)
    again = augment.apply(images[1:], parameters)
    torch.testing.assert_close(again[0], views[1])  # the same views for every image given the same parameters


def test_ranking_is_eq7_restricted_to_the_text_top_k():
    text = torch.tensor([[1.0, 0.0]])
    source = torch.tensor([[0.0, 1.0]])
    candidates = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]]), dim=-1)
    scores, chosen = rank_candidates(candidates, source, text, alpha=2.0, beta=1.0, top_k=None)
    t2i = candidates[0, :, 0].softmax(0)
    i2i = candidates[0, :, 1].softmax(0)
    torch.testing.assert_close(scores[0], 2 * t2i + i2i)
    # Candidate 2 matches the source and not the text: top_k=2 by text rules it out even with a huge beta.
    assert rank_candidates(candidates, source, text, alpha=0.0, beta=10.0, top_k=2)[1].item() == 1
    assert chosen.item() == int((2 * t2i + i2i).argmax())
