"""EMA: averages and warmup by hand, frozen parameters left alone, swap-in restores on error, checkpoint round trip."""

import pytest
import torch
from torch import nn

from interpedit.diffusion import EMA


def two_layer_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(1.0)
    model[1].bias.requires_grad_(False)  # frozen: not averaged
    return model


def set_weights(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.fill_(value)


def test_average_with_warmup_by_hand():
    model = two_layer_model()
    ema = EMA(model, decay=0.9, warmup=2)
    # Decays: update 1 -> min(0.9, 2/4) = 0.5, update 2 -> min(0.9, 3/5) = 0.6, update 3 -> min(0.9, 4/6) = 2/3.
    expected = 1.0
    for value, decay in [(3.0, 0.5), (5.0, 0.6), (-1.0, 2 / 3)]:
        assert ema.current_decay() == pytest.approx(decay)
        set_weights(model, value)
        ema.update()
        expected = decay * expected + (1 - decay) * value
    # 0.5 * 1 + 0.5 * 3 = 2; 0.6 * 2 + 0.4 * 5 = 3.2; 2/3 * 3.2 + 1/3 * (-1) = 1.8
    assert expected == pytest.approx(1.8)
    with ema.swapped_in() as averaged:
        assert averaged is model
        torch.testing.assert_close(model[0].weight, torch.full((2, 2), 1.8))
        torch.testing.assert_close(model[1].weight, torch.full((1, 2), 1.8))
    assert int(ema.num_updates) == 3
    assert EMA(two_layer_model(), decay=0.9).current_decay() == 0.9  # no warmup
    # latent-diffusion's LitEma: min(decay, (1 + n) / (10 + n)).
    assert EMA(two_layer_model(), decay=0.999, warmup=9).current_decay() == pytest.approx(2 / 11)


def test_frozen_parameters_are_neither_averaged_nor_saved():
    model = two_layer_model()
    ema = EMA(model, decay=0.5)
    assert not any("1__bias" in key for key in ema.state_dict())
    expected_keys = {"shadow__0__weight", "shadow__0__bias", "shadow__1__weight", "num_updates"}
    assert set(ema.state_dict()) == expected_keys
    with torch.no_grad():
        model[1].bias.fill_(7.0)
    with ema.swapped_in():
        assert model[1].bias.item() == 7.0


def test_swapped_in_restores_the_training_weights_even_on_error():
    model = two_layer_model()
    ema = EMA(model, decay=0.5)
    set_weights(model, 3.0)
    ema.update()  # average 2.0
    set_weights(model, 4.0)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        with ema.swapped_in():
            assert model[0].weight[0, 0].item() == 2.0
            raise RuntimeError("evaluation failed")
    assert all(parameter.eq(4.0).all() for parameter in model.parameters() if parameter.requires_grad)
    assert model[0].weight.requires_grad  # still a trainable parameter, not replaced


def test_state_dict_round_trip_and_copy_to():
    model = two_layer_model()
    ema = EMA(model, decay=0.8, warmup=3)
    for value in (2.0, 5.0):
        set_weights(model, value)
        ema.update()
    restored = EMA(two_layer_model(), decay=0.8, warmup=3)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.num_updates) == 2
    assert restored.current_decay() == ema.current_decay()
    fresh = two_layer_model()
    restored.copy_to(fresh)
    with ema.swapped_in():
        for ours, theirs in zip(model.parameters(), fresh.parameters()):
            assert torch.equal(ours, theirs)
    with pytest.raises(RuntimeError, match="Missing key"):
        EMA(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1), nn.Linear(1, 1))).load_state_dict(ema.state_dict())


def test_bad_inputs_fail_with_clear_messages():
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\]; got 1.5"):
        EMA(two_layer_model(), decay=1.5)
    with pytest.raises(ValueError, match="warmup must be >= 0; got -1"):
        EMA(two_layer_model(), warmup=-1)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="Linear has no parameters that require grad: nothing to average"):
        EMA(frozen)
    with pytest.raises(ValueError, match="Linear has no parameter '0.weight' to copy the average into"):
        EMA(two_layer_model()).copy_to(nn.Linear(2, 2))
