"""FiLM: starts as the identity and, once trained, modulates tokens by the condition."""

import torch

from interpedit.region import FiLM


def test_film_starts_as_the_identity_and_learns_a_condition_dependent_modulation():
    torch.manual_seed(0)
    film = FiLM(token_dim=8, condition_dim=6, hidden_dim=16)
    tokens, condition = torch.randn(2, 3, 8), torch.randn(2, 3, 6)
    assert torch.equal(film(tokens, condition), tokens)

    target = tokens * 2 + condition.sum(dim=-1, keepdim=True)
    optimiser = torch.optim.Adam(film.parameters(), lr=1e-2)
    for _ in range(50):
        optimiser.zero_grad()
        loss = (film(tokens, condition) - target).square().mean()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * (tokens - target).square().mean().item()
    other = film(tokens, condition.flip(1))
    assert not torch.allclose(other, film(tokens, condition))


def test_without_zero_init_positions_change_tokens_from_the_start():
    import torch

    from interpedit.region.film import FiLM

    torch.manual_seed(0)
    tokens, first, second = torch.randn(4, 16), torch.randn(4, 8), torch.randn(4, 8)
    identity = FiLM(16, 8, 32)
    torch.testing.assert_close(identity(tokens, first), tokens)
    live = FiLM(16, 8, 32, zero_init=False)
    assert not torch.allclose(live(tokens, first), live(tokens, second))
