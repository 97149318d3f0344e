"""Callbacks of the training harness."""

import random

import numpy as np
import torch

from callbacks.rng_state import RNGStateCheckpoint


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    callback = RNGStateCheckpoint()
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    torch.save({"rng": callback.state_dict()}, tmp_path / "state.pt")
    expected = draws()
    assert draws() != expected
    callback.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    assert draws() == expected
