"""Jacobian directions: the top right singular vectors of d(mask * eps)/dh, along a sample's own trajectory.

At step t with latent x_t, ``f(delta) = mask * eps(x_t, t; h + delta)`` (the skip connections held at their
values: the offset enters at h only). Its Jacobian J at delta = 0 maps h-space to output space; its top right
singular vectors are the h directions that change the (masked) output most.

Products with J come from reverse mode only, on one forward pass per step: ``J^T u`` is the pullback (``vjp``),
and ``J v`` the pullback of the pullback, which is linear in its cotangent (the "double-vjp" trick). Forward mode
would do, but timm and diffusers' GroupNorm and the CPU flash attention lack some forward and double-backward
formulas, so attention runs on PyTorch's math SDPA kernel inside these products.

- ``block_singular_vectors``: block (subspace) iteration on J^T J with Rayleigh-Ritz, all k vectors (plus
  ``oversample`` more) together: per iteration one batched ``J V`` and one batched ``J^T W``.
- ``power_iteration``: sequential power iteration with deflation, one vector after the other (the released code's
  method), for comparison.

Both count "passes": the forward, and each batched product (one backward pass of the UNet graph each).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.func import vjp
from torch.nn.attention import SDPBackend, sdpa_kernel

from interpedit.diffusion import NoiseSchedule, ddim_sample
from interpedit.hspace.h_space import HSpace
from interpedit.hspace.trajectory import HTrajectory


@dataclass
class SingularVectors:
    values: Tensor
    """(k,) singular values, largest first."""
    vectors: Tensor
    """(k, *h) unit right singular vectors."""
    passes: int
    """UNet passes spent: the forward and each batched product."""
    products: int = 0
    """Single-vector products with J or J^T (batch entries)."""
    iterations: list[int] = field(default_factory=list)


class JacobianProducts:
    """``J v`` and ``J^T u`` for ``f(delta) = mask * eps(x, t; h + delta)`` at delta = 0, for ``rows`` vectors at
    a time (the sample is replicated ``rows`` times, so one product of ``rows`` vectors is one batched pass)."""

    def __init__(self, hspace: HSpace, x: Tensor, t: int, mask: Tensor | None, rows: int,
                 h_shape: tuple[int, ...] | None = None) -> None:
        self.passes = 0
        if h_shape is None:
            h_shape = hspace.h_shape(x, t)
            self.passes += 1
        self.h_shape = tuple(h_shape)
        self.rows = rows
        replicated = x[:1].repeat(rows, *[1] * (x.ndim - 1))
        timesteps = torch.full((rows,), int(t), dtype=torch.long, device=x.device)
        weight = None if mask is None else mask.to(x)

        def f(delta: Tensor) -> Tensor:
            with hspace.offset(lambda h: delta):
                out = hspace(replicated, timesteps)
            return out if weight is None else out * weight

        zeros = torch.zeros(rows, *h_shape, device=x.device, dtype=x.dtype)
        with sdpa_kernel(SDPBackend.MATH), torch.enable_grad():
            self.output, self._pullback = vjp(f, zeros)
            _, self._pushforward = vjp(lambda c: self._pullback(c)[0], torch.zeros_like(self.output))
        self.passes += 1

    def jvp(self, v: Tensor) -> Tensor:
        """(rows, *h) -> (rows, *out): J v for each row."""
        with sdpa_kernel(SDPBackend.MATH), torch.enable_grad():
            (out,) = self._pushforward(v.to(self.output))
        self.passes += 1
        return out.detach()

    def vjp(self, u: Tensor) -> Tensor:
        """(rows, *out) -> (rows, *h): J^T u for each row."""
        with sdpa_kernel(SDPBackend.MATH), torch.enable_grad():
            (out,) = self._pullback(u.to(self.output))
        self.passes += 1
        return out.detach()


def _orthonormal_rows(matrix: Tensor) -> Tensor:
    q, _ = torch.linalg.qr(matrix.T)
    return q.T


def block_singular_vectors(hspace: HSpace, x: Tensor, t: int, k: int = 3, mask: Tensor | None = None,
                           oversample: int = 2, tol: float = 1e-4, max_iterations: int = 100,
                           generator: torch.Generator | None = None,
                           h_shape: tuple[int, ...] | None = None) -> SingularVectors:
    """Top-k right singular vectors of J at (x, t) by block iteration (module docstring).

    Stops when every one of the k Ritz values changed by less than ``tol`` (relative) in an iteration.
    """
    rows = k + oversample
    products = JacobianProducts(hspace, x, t, mask, rows, h_shape)
    dim = int(torch.tensor(products.h_shape).prod())
    start = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    basis = _orthonormal_rows(start)
    previous = None
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        images = products.jvp(basis.reshape(rows, *products.h_shape).float()).reshape(rows, -1).double()  # J V
        # Rayleigh-Ritz on span(V): J V^T = P S Q^T gives Ritz vectors Q^T V and values S.
        _, values, right = torch.linalg.svd(images.T, full_matrices=False)
        ritz = right @ basis  # (rows, dim), sorted by value
        if previous is not None and bool(((values[:k] - previous).abs() <= tol * values[:k].abs()).all()):
            basis = ritz
            break
        previous = values[:k]
        pulled = products.vjp(images.reshape(rows, *products.output.shape[1:]).float()).reshape(rows, -1).double()
        basis = _orthonormal_rows(pulled)  # span(J^T J V)
    return SingularVectors(values[:k].float(), ritz[:k].float().reshape(k, *products.h_shape), products.passes,
                           (products.passes - 1) * rows, [iterations])


def power_iteration(hspace: HSpace, x: Tensor, t: int, k: int = 3, mask: Tensor | None = None, tol: float = 1e-4,
                    max_iterations: int = 100, generator: torch.Generator | None = None,
                    h_shape: tuple[int, ...] | None = None) -> SingularVectors:
    """Top-k right singular vectors of J at (x, t), one after another by power iteration on J^T J with deflation
    against the vectors already found (the released method). Stops a vector when its value changed by less than
    ``tol`` (relative)."""
    products = JacobianProducts(hspace, x, t, mask, 1, h_shape)
    dim = int(torch.tensor(products.h_shape).prod())
    found: list[Tensor] = []
    values: list[float] = []
    counts: list[int] = []
    for _ in range(k):
        v = torch.randn(dim, generator=generator, dtype=torch.float64)
        value, steps = None, 0
        for steps in range(1, max_iterations + 1):
            for u in found:
                v = v - (v @ u) * u
            v = v / v.norm()
            image = products.jvp(v.reshape(1, *products.h_shape).float()).double()
            pulled = products.vjp(image.float()).reshape(-1).double()
            for u in found:
                pulled = pulled - (pulled @ u) * u
            new_value = float(pulled.norm().sqrt())
            v = pulled / pulled.norm()
            if value is not None and abs(new_value - value) <= tol * abs(new_value):
                value = new_value
                break
            value = new_value
        found.append(v)
        values.append(value)
        counts.append(steps)
    return SingularVectors(torch.tensor(values), torch.stack(found).float().reshape(k, *products.h_shape),
                           products.passes, products.passes - 1, counts)


# ------------------------------------------------------------------ along a trajectory, with a cache
def _digest(*tensors: Tensor | None) -> str:
    hasher = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            hasher.update(b"none")
            continue
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        hasher.update(str(tuple(data.shape)).encode())
        hasher.update(data.numpy().tobytes())
    return hasher.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's config and weights (every parameter's bytes)."""
    config = getattr(model, "config", None)
    text = json.dumps(dict(config), sort_keys=True, default=str) if config is not None else type(model).__name__
    return hashlib.sha256(text.encode() + _digest(*model.parameters()).encode()).hexdigest()


def jacobian_cache_key(hspace: HSpace, trajectory: HTrajectory, mask: Tensor | None, k: int, oversample: int,
                       tol: float, max_iterations: int, steps: Sequence[int] | None = None) -> str:
    """Everything the directions depend on: the model, the h place and prompt, the trajectory (start, noises,
    etas, timesteps), the mask, the steps computed and the solver's settings."""
    settings = json.dumps({"place": hspace.place, "k": k, "oversample": oversample, "tol": tol,
                           "max_iterations": max_iterations, "timesteps": trajectory.timesteps,
                           "etas": trajectory.etas, "steps": None if steps is None else list(steps)})
    parts = [model_fingerprint(hspace.unet), settings,
             _digest(trajectory.x_T, trajectory.noises, hspace.encoder_hidden_states, mask)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


@dataclass
class JacobianDirections:
    vectors: Tensor
    """(k, T, *h) unit right singular vectors per step (zeros at steps not computed)."""
    values: Tensor
    """(k, T) singular values."""
    passes: int

    def offset(self, component: int, at_step: int | None = None) -> Tensor:
        """(T, *h): ``sigma_t * u_t`` of ``component`` at every step, or the vector of step ``at_step`` reused at
        every step, each scaled by that step's value (the released ``global_at_idx``)."""
        vectors = self.vectors[component]
        if at_step is not None:
            vectors = vectors[at_step][None].expand_as(vectors)
        return vectors * self.values[component].view(-1, *[1] * (vectors.ndim - 1))


def trajectory_latents(hspace: HSpace, schedule: NoiseSchedule, trajectory: HTrajectory) -> list[Tensor]:
    """The latents x_{t_i} (B, ...) the trajectory passes through, replayed with its stored noises."""
    seen: list[Tensor] = []

    def keep(step: dict) -> None:
        seen.append(step["x"])

    with torch.no_grad():
        ddim_sample(hspace, trajectory.x_T, trajectory.timesteps, schedule, eta=trajectory.etas,
                    noises=trajectory.noises, callback=keep)
    return seen


def jacobian_directions(hspace: HSpace, schedule: NoiseSchedule, trajectory: HTrajectory, k: int = 3,
                        mask: Tensor | None = None, steps: Sequence[int] | None = None, oversample: int = 2,
                        tol: float = 1e-4, max_iterations: int = 100, seed: int = 0,
                        cache_dir: str | Path | None = None) -> JacobianDirections:
    """Block-iteration singular vectors at each step (or ``steps``) of a one-sample trajectory, on the sample's own
    path (its stored noises). Cached under ``cache_dir`` by ``jacobian_cache_key``."""
    if trajectory.batch_size != 1:
        raise ValueError(f"jacobian_directions takes one trajectory; got a batch of {trajectory.batch_size}")
    count = len(trajectory.timesteps)
    chosen = list(range(count)) if steps is None else [int(s) for s in steps]
    path = None
    if cache_dir is not None:
        key = jacobian_cache_key(hspace, trajectory, mask, k, oversample, tol, max_iterations, chosen)
        path = Path(cache_dir) / f"jacobian-{key}.safetensors"
        if path.is_file():
            from safetensors.torch import load_file

            stored = load_file(str(path))
            return JacobianDirections(stored["vectors"], stored["values"], 0)
    latents = trajectory_latents(hspace, schedule, trajectory)
    h_shape = tuple(trajectory.hs.shape[2:])
    vectors = torch.zeros(k, count, *h_shape)
    values = torch.zeros(k, count)
    passes = 0
    generator = torch.Generator().manual_seed(seed)
    for i in chosen:
        result = block_singular_vectors(hspace, latents[i], trajectory.timesteps[i], k, mask, oversample, tol,
                                        max_iterations, generator, h_shape)
        vectors[:, i], values[:, i] = result.vectors.cpu(), result.values.cpu()
        passes += result.passes
    # Align each step's signs with the first computed step, as the released code does.
    reference = vectors[:, chosen[0]].flatten(1)
    signs = torch.sign((vectors.flatten(2) * reference[:, None]).sum(-1))
    signs[signs == 0] = 1
    vectors = vectors * signs.view(k, count, *[1] * len(h_shape))
    if path is not None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".partial")
        save_file({"vectors": vectors.contiguous(), "values": values.contiguous()}, str(scratch))
        scratch.replace(path)
    return JacobianDirections(vectors, values, passes)
