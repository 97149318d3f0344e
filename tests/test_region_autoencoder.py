"""The region autoencoder model: loss, decoding, edits on the conditioning, pixel and latent space."""

import torch
from diffusers import DDIMScheduler

from datamodules.shapes import ShapesDataset
from interpedit.backbones.tiny_presets import tiny_unet2d_condition, tiny_vae, tiny_vit
from interpedit.region import RegionEncoder, ViTFeatures, move_region
from interpedit.region.region_autoencoder import RegionAutoencoder


def tiny_model(vae: bool = False) -> RegionAutoencoder:
    torch.manual_seed(0)
    encoder = RegionEncoder(ViTFeatures(tiny_vit(), trainable="full"), token_dim=16, pooling_width=16,
                            pooling_depth=1, pooling_heads=2, position_embedding_dim=12, film_hidden_dim=16)
    channels = 4 if vae else 3
    unet = tiny_unet2d_condition(in_channels=channels, out_channels=channels, sample_size=8 if vae else 32,
                                 cross_attention_dim=8)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    return RegionAutoencoder(encoder, unet, scheduler, vae=tiny_vae() if vae else None)


def shapes_batch(count: int = 2) -> dict:
    dataset = ShapesDataset("train", num_scenes=count)
    items = [dataset[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "masks", "region_valid")}


def test_loss_reaches_encoder_and_decoder_and_respects_the_loss_mask():
    model = tiny_model()
    batch = shapes_batch()
    output = model.encode(batch["image"], batch["masks"], batch["region_valid"])
    states = model.condition(output.token_set())
    generator = torch.Generator().manual_seed(0)
    loss = model.denoising_loss(batch["image"], states, generator=generator)
    loss.backward()
    assert model.unet.conv_in.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    # A loss mask covering everything is the plain loss; a partial one gives a different value.
    with torch.no_grad():
        def loss_with(mask):
            return model.denoising_loss(batch["image"], states, loss_mask=mask, generator=torch.Generator().manual_seed(1))

        everything = torch.ones(2, 32, 32, dtype=torch.bool)
        half = everything.clone()
        half[:, 16:] = False
        torch.testing.assert_close(loss_with(everything), loss_with(None))
        assert not torch.isclose(loss_with(half), loss_with(None))


def test_decoding_is_seeded_and_a_move_changes_one_slot_of_the_conditioning():
    model = tiny_model().eval()
    batch = shapes_batch()
    tokens = model.encode(batch["image"], batch["masks"], batch["region_valid"]).token_set()
    first = model.decode(tokens, steps=3, cfg_scale=2.0, seed=7)
    assert first.shape == (2, 3, 32, 32) and 0.0 <= first.min() and first.max() <= 1.0
    torch.testing.assert_close(first, model.decode(tokens, steps=3, cfg_scale=2.0, seed=7))
    for parameter in model.encoder.film.parameters():  # FiLM starts as the identity: give positions an effect
        torch.nn.init.normal_(parameter, std=0.5)
    moved = move_region(tokens, 0, (0.9, 0.1))
    before, after = model.condition(tokens), model.condition(moved)
    extra = model.conditioning.num_extra_slots
    changed = (before - after).abs().amax(dim=-1) > 0  # (B, L)
    assert changed[:, extra].all() and not changed[:, :extra].any() and not changed[:, extra + 1 :].any()


def test_latent_space_decoder_round_trips_shapes():
    model = tiny_model(vae=True).eval()
    batch = shapes_batch(1)
    states = model.condition(model.encode(batch["image"], batch["masks"], batch["region_valid"]).token_set())
    loss = model.denoising_loss(batch["image"], states, loss_mask=torch.ones(1, 32, 32, dtype=torch.bool))
    assert torch.isfinite(loss)
    decoded = model.decode(model.encode(batch["image"], batch["masks"], batch["region_valid"]).token_set(),
                           steps=2, image_size=32)
    assert decoded.shape == (1, 3, 32, 32)
    assert not any(p.requires_grad for p in model.vae.parameters())


def test_coordinate_channels_reach_the_unet_in_training_and_decoding():
    import pytest

    torch.manual_seed(0)
    encoder = RegionEncoder(ViTFeatures(tiny_vit(), trainable="full"), token_dim=16, pooling_width=16,
                            pooling_depth=1, pooling_heads=2, position_embedding_dim=12, film_hidden_dim=16)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    with pytest.raises(ValueError, match="plus 2 coordinate channels"):
        RegionAutoencoder(encoder, tiny_unet2d_condition(in_channels=3, out_channels=3, sample_size=32,
                                                         cross_attention_dim=8), scheduler, coordinate_channels=True)
    unet = tiny_unet2d_condition(in_channels=5, out_channels=3, sample_size=32, cross_attention_dim=8)
    model = RegionAutoencoder(encoder, unet, scheduler, coordinate_channels=True).eval()
    x = torch.zeros(2, 3, 4, 6)
    grid = model.unet_input(x)
    assert grid.shape == (2, 5, 4, 6)
    assert grid[0, 3, 0].tolist() == torch.linspace(-1, 1, 6).tolist()  # x runs along the width
    assert grid[1, 4, :, 0].tolist() == torch.linspace(-1, 1, 4).tolist()  # y along the height
    seen = []
    hook = model.unet.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[1]))
    try:
        batch = shapes_batch()
        tokens = model.encode(batch["image"], batch["masks"], batch["region_valid"]).token_set()
        model.denoising_loss(batch["image"], model.condition(tokens))
        decoded = model.decode(tokens, steps=2, cfg_scale=2.0)
    finally:
        hook.remove()
    assert decoded.shape == (2, 3, 32, 32) and set(seen) == {5}


def test_centred_consistency_is_not_satisfied_by_a_shared_direction():
    from lightning_modules.region_autoencoder import centred_cosine_distance

    torch.manual_seed(0)
    shared = torch.full((1, 1, 32), 10.0)
    first, second = torch.randn(4, 3, 32) + shared, torch.randn(4, 3, 32) + shared
    pairs = torch.ones(4, 3, dtype=torch.bool)
    plain = 1 - torch.nn.functional.cosine_similarity(first, second, dim=-1).mean()
    assert plain < 0.05  # plain cosine calls unrelated tokens nearly the same
    assert centred_cosine_distance(first, second, pairs) > 0.8
    assert centred_cosine_distance(first, first.clone(), pairs) < 1e-5
    pairs[:, 1:] = False
    assert centred_cosine_distance(first, second, pairs) > 0.5  # only the marked pairs count


def test_token_layout_is_given_to_conditional_rows_and_empty_to_unconditional_ones():
    torch.manual_seed(0)
    encoder = RegionEncoder(ViTFeatures(tiny_vit(), trainable="full"), token_dim=16, pooling_width=16,
                            pooling_depth=1, pooling_heads=2, position_embedding_dim=12, film_hidden_dim=16)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    unet = tiny_unet2d_condition(in_channels=3 + 2 + 4, out_channels=3, sample_size=32, cross_attention_dim=8)
    model = RegionAutoencoder(encoder, unet, scheduler, coordinate_channels=True, layout_channels=4).eval()
    inputs = []
    hook = model.unet.conv_in.register_forward_hook(lambda module, args, output: inputs.append(args[0].detach()))
    try:
        batch = shapes_batch()
        tokens = model.encode(batch["image"], batch["masks"], batch["region_valid"]).token_set()
        model.decode(tokens, steps=1, cfg_scale=2.0)
    finally:
        hook.remove()
    (guided,) = inputs
    assert guided.shape == (4, 9, 32, 32)
    assert guided[:2, 5:].abs().max() == 0  # unconditional rows: empty layout
    torch.testing.assert_close(guided[2:, 5:], model.token_layout(tokens, 32, 32))
    assert guided[2:, 5:].abs().max() > 0
