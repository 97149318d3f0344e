"""Counting what an edit costs: samples through the UNet forward and backward, and wall-clock seconds.

A forward counts the samples of the batch the UNet was called on, so a classifier-free-guidance call on one image
(its conditional and unconditional branches batched together) counts 2, and 50 DDIM steps with CFG count 100. A
backward counts the samples of a call that a gradient flowed back through the whole UNet for (one backward pass
of a batch of B counts B), whether it started at the output (training) or at inner features (a guidance energy on
attention maps), and whether it was for the weights or the input. Counting uses forward hooks
(``register_forward_pre_hook``, ``register_forward_hook``) and a tensor hook on the output of the UNet's first layer
(``conv_in``; the UNet's output for models without one), all removed on exit.

Three lines from a notebook::

    with count_unet_calls(pipeline.unet) as cost:
        pipeline("a red circle", num_inference_steps=25)
    cost.forwards   # 50
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

COST_KEYS: tuple[str, ...] = ("cost/unet_forwards", "cost/unet_backwards", "cost/seconds")
"""The per-image cost figures ``eval.py`` records for every method."""


@dataclass
class UNetCost:
    """What ran inside a ``count_unet_calls`` context.

    Attributes:
        forwards: samples passed forward through the UNet(s).
        backwards: samples a gradient flowed back through.
        calls: UNet forward calls (batched calls count once).
        seconds: wall-clock time of the context (set on exit).
    """

    forwards: int = 0
    backwards: int = 0
    calls: int = 0
    seconds: float = 0.0


def find_unets(root: nn.Module) -> list[nn.Module]:
    """Every diffusers UNet (``UNet2DConditionModel``, ``UNet2DModel``) inside ``root`` (``root`` itself included),
    outermost first; UNets nested in a counted UNet are skipped."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    unets: list[nn.Module] = []
    for module in root.modules():
        if isinstance(module, (UNet2DConditionModel, UNet2DModel)) and not any(
            module in set(outer.modules()) for outer in unets
        ):
            unets.append(module)
    return unets


def _batch_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    sample = args[0] if args else kwargs.get("sample")
    if not isinstance(sample, Tensor):
        raise TypeError("count_unet_calls: the UNet was called without a sample tensor")
    return int(sample.shape[0])


def _output_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    sample = getattr(output, "sample", None)
    if isinstance(sample, Tensor):
        return sample
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    return None


@contextmanager
def count_unet_calls(unets: nn.Module | Iterable[nn.Module]) -> Iterator[UNetCost]:
    """Count UNet forwards and backwards (in samples) and time the context.

    Args:
        unets: a UNet, several, or any module holding them (found with ``find_unets``); a module without a
            UNet counts nothing.

    Yields:
        ``UNetCost``, updated as the body runs; ``seconds`` is set on exit. Hooks are removed on exit, also on
        error.
    """
    roots = [unets] if isinstance(unets, nn.Module) else list(unets)
    modules = []
    for root in roots:
        modules += [unet for unet in find_unets(root) if unet not in modules]
    cost = UNetCost()
    pending: list[int] = []

    def counter(size: int):
        def count_backward(grad: Tensor) -> None:
            cost.backwards += size

        return count_backward

    def before(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        size = _batch_size(args, kwargs)
        cost.forwards += size
        cost.calls += 1
        pending.append(size)

    def first_layer(_module: nn.Module, _args: Any, output: Any) -> None:
        # A backward through the whole UNet reaches its first layer's output, whether the gradient is for the
        # weights (training) or for the input (guidance), and whether it starts at the output or at inner features.
        if pending and isinstance(output, Tensor) and output.requires_grad:
            output.register_hook(counter(pending[-1]))

    def after(module: nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
        size = pending.pop() if pending else 0
        if isinstance(getattr(module, "conv_in", None), nn.Module):
            return
        tensor = _output_tensor(output)
        if tensor is not None and tensor.requires_grad:
            tensor.register_hook(counter(size))

    handles = []
    started = time.perf_counter()
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(module.register_forward_hook(after, with_kwargs=True))
            if isinstance(getattr(module, "conv_in", None), nn.Module):
                handles.append(module.conv_in.register_forward_hook(first_layer))
        yield cost
    finally:
        for handle in handles:
            handle.remove()
        cost.seconds = time.perf_counter() - started
