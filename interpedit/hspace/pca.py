"""Principal directions of h, per timestep and global, from samples streamed in batches.

No N x T x dim tensor is held: each timestep (and the global, all-steps-concatenated view) keeps a Frequent
Directions sketch (Liberty, KDD 2013) of its uncentred rows, ``ell`` x dim, plus the running sum. A batch is
appended to the sketch, the SVD of the stack is taken, and the squared singular values are shrunk by the
``ell``-th one, so that ``B^T B`` approximates ``X^T X`` within ``||X||_F^2 / (ell - k)`` in the top-k subspace.
The covariance is then ``(B^T B - N mu mu^T) / (N - 1)``; its top eigenvectors lie in the span of B's rows and mu,
so they come from a small eigenproblem there. With ``ell`` at least the number of samples the result is exact.

Directions are returned with unit norm per step and the standard deviation along them, so ``std * direction`` is
one standard deviation (the released code's "scale units"). Signs: each component's first entry is made positive,
then each step's sign follows its inner product with the same component at the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class FrequentDirections:
    """A streaming sketch of rows of width ``dim`` (float64 on the given device)."""

    def __init__(self, dim: int, ell: int, device: torch.device | str = "cpu") -> None:
        if ell < 1:
            raise ValueError(f"FrequentDirections.ell must be >= 1, got {ell}")
        self.dim, self.ell = dim, ell
        self.sketch = torch.zeros(0, dim, dtype=torch.float64, device=device)
        self.total = torch.zeros(dim, dtype=torch.float64, device=device)
        self.count = 0

    def update(self, rows: Tensor) -> None:
        """Append (n, dim) rows."""
        rows = rows.reshape(rows.shape[0], -1).to(self.sketch.device, torch.float64)
        if rows.shape[1] != self.dim:
            raise ValueError(f"rows of width {rows.shape[1]} for a sketch of width {self.dim}")
        self.total += rows.sum(0)
        self.count += rows.shape[0]
        stacked = torch.cat([self.sketch, rows])
        if stacked.shape[0] <= self.ell:
            self.sketch = stacked
            return
        _, singular, vh = torch.linalg.svd(stacked, full_matrices=False)
        shrink = singular[self.ell - 1] ** 2 if singular.shape[0] >= self.ell else 0.0
        kept = (singular[: self.ell] ** 2 - shrink).clamp(min=0).sqrt()
        self.sketch = kept[:, None] * vh[: self.ell]

    def principal(self, components: int) -> tuple[Tensor, Tensor]:
        """``(directions (k, dim), std (k,))`` of the centred data, largest first."""
        if self.count < 2:
            raise ValueError("principal directions need at least 2 samples")
        mean = self.total / self.count
        basis, _ = torch.linalg.qr(torch.cat([self.sketch, mean[None]]).T)  # (dim, r)
        projected = self.sketch @ basis  # (ell, r)
        mean_projected = mean @ basis  # (r,)
        covariance = (projected.T @ projected - self.count * torch.outer(mean_projected, mean_projected))
        covariance = covariance / (self.count - 1)
        values, vectors = torch.linalg.eigh(covariance)
        order = values.argsort(descending=True)[:components]
        directions = (basis @ vectors[:, order]).T
        return directions, values[order].clamp(min=0).sqrt()


@dataclass
class PrincipalDirections:
    """Per-timestep (or global) principal directions of h."""

    directions: Tensor
    """(k, T, *h): unit norm per step (per-timestep PCA) or over all steps together (global PCA)."""
    std: Tensor
    """(k, T) standard deviation along each direction at each step (global: the same value at every step)."""

    def offset(self, component: int) -> Tensor:
        """(T, *h): one standard deviation along ``component`` at every step."""
        direction = self.directions[component]
        return direction * self.std[component].view(-1, *[1] * (direction.ndim - 1)).to(direction)


class StreamingPCA:
    """Per-timestep and global PCA of h over trajectories streamed in batches.

    Args:
        steps: T timesteps per trajectory.
        h_shape: the shape of one h.
        ell: sketch rows (>= the number of samples for an exact result; memory is ``(T + 1) * ell * dim``).
        global_pca: also sketch the concatenation of all steps.
    """

    def __init__(self, steps: int, h_shape: tuple[int, ...], ell: int = 256, global_pca: bool = True,
                 device: torch.device | str = "cpu") -> None:
        self.steps, self.h_shape = steps, tuple(h_shape)
        dim = int(torch.tensor(self.h_shape).prod())
        self.per_step = [FrequentDirections(dim, ell, device) for _ in range(steps)]
        self.all_steps = FrequentDirections(dim * steps, ell, device) if global_pca else None

    def update(self, hs: Tensor) -> None:
        """Add a batch of trajectories' h: (T, B, *h)."""
        if hs.shape[0] != self.steps or tuple(hs.shape[2:]) != self.h_shape:
            raise ValueError(f"h of shape {tuple(hs.shape)}; expected ({self.steps}, B, *{self.h_shape})")
        for step, sketch in enumerate(self.per_step):
            sketch.update(hs[step])
        if self.all_steps is not None:
            self.all_steps.update(hs.transpose(0, 1).reshape(hs.shape[1], -1))

    @property
    def count(self) -> int:
        return self.per_step[0].count

    def per_timestep(self, components: int) -> PrincipalDirections:
        directions, stds = [], []
        for sketch in self.per_step:
            direction, std = sketch.principal(components)
            directions.append(direction)
            stds.append(std)
        directions = torch.stack(directions, dim=1)  # (k, T, dim)
        stds = torch.stack(stds, dim=1)
        first = directions[:, :, 0:1].sign()
        first[first == 0] = 1
        directions = directions * first
        align = torch.sign((directions * directions[:, :1]).sum(-1, keepdim=True))
        align[align == 0] = 1
        directions = directions * align
        return PrincipalDirections(directions.float().reshape(components, self.steps, *self.h_shape), stds.float())

    def global_directions(self, components: int) -> PrincipalDirections:
        if self.all_steps is None:
            raise ValueError("StreamingPCA was built with global_pca=False")
        directions, std = self.all_steps.principal(components)
        directions = directions * torch.where(directions[:, :1] < 0, -1.0, 1.0).to(directions)
        shaped = directions.float().reshape(components, self.steps, *self.h_shape)
        return PrincipalDirections(shaped, std.float()[:, None].expand(components, self.steps).contiguous())
