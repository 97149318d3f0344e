"""Instrumenting a diffusers UNet: attention probabilities, block features, and edits of block outputs.

Everything goes through the libraries' extension points and is undone on exit, also when the body raises:

- ``capture_attention``: swaps a capturing attention processor (an explicit softmax that stores the probabilities)
  onto the chosen layers through ``set_attn_processor``; every other layer keeps the processor it had (PyTorch
  SDPA by default). The probabilities are those of ``diffusers.models.attention_processor.AttnProcessor``:
  ``softmax(Q K^T * attn.scale)``, with ``attn.scale = 1 / sqrt(head_dim)``.
- ``capture_outputs``, ``replace_outputs``, ``offset_outputs``: ``register_forward_hook`` (or a forward pre-hook for
  a module's input) on any submodule by name: a feature map (``up_blocks.1.resnets.0``), the mid-block output
  "h" (``mid_block``), its input (``where="input"``), or a tensor inside a block (``mid_block.resnets.1.norm2``).

Layers are chosen by ``fnmatch`` patterns on their names (``attention_layers`` lists them); block names are
``named_modules`` names. The same hooks serve DiffEdit (noise predictions only), Guide-and-Rescale (self-attention
maps and features of several passes, with gradients), h-space directions (reading and offsetting h) and cost counting.

Three lines from a notebook::

    with capture_attention(unet, "*attn1") as maps:
        unet(latents, t, encoder_hidden_states=text)
    maps["down_blocks.0.attentions.0.transformer_blocks.0.attn1"][0]    # (B, heads, HW, HW)
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

PROCESSOR_SUFFIX = ".processor"
HOOK_PLACES = ("output", "input")


@dataclass(frozen=True)
class AttentionLayer:
    """One attention layer of a UNet.

    Attributes:
        name: its module name (``down_blocks.0.attentions.0.transformer_blocks.0.attn1``), the key of captured maps.
        kind: ``self`` (attends to the image) or ``cross`` (to the text).
        block: the UNet block it lives in (``down_blocks.0``, ``mid_block``, ``up_blocks.2``).
        heads: number of heads.
        channels: query width (the feature channels at its resolution).
    """

    name: str
    kind: str
    block: str
    heads: int
    channels: int


def attention_layers(unet: nn.Module) -> list[AttentionLayer]:
    """Every attention layer whose processor ``set_attn_processor`` can replace, in the UNet's order."""
    layers = []
    for processor_name in unet.attn_processors:
        name = processor_name[: -len(PROCESSOR_SUFFIX)]
        module = unet.get_submodule(name)
        parts = name.split(".")
        block = parts[0] if parts[0] == "mid_block" else ".".join(parts[:2])
        layers.append(AttentionLayer(name=name, kind="cross" if module.is_cross_attention else "self", block=block,
                                     heads=int(module.heads), channels=int(module.to_q.in_features)))
    return layers


def select_layers(unet: nn.Module, patterns: str | Sequence[str], kind: str | None = None) -> list[str]:
    """Names of the attention layers matching any of ``patterns`` (``fnmatch``), optionally of one ``kind``.

    Raises:
        ValueError: a pattern matches no layer (the message lists the layers there are).
    """
    if kind not in (None, "self", "cross"):
        raise ValueError(f"kind must be 'self', 'cross' or None; got {kind!r}")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    layers = [layer for layer in attention_layers(unet) if kind is None or layer.kind == kind]
    chosen = []
    for pattern in patterns:
        matched = [layer.name for layer in layers if fnmatch.fnmatchcase(layer.name, pattern)]
        if not matched:
            names = ", ".join(layer.name for layer in layers) or "none"
            raise ValueError(
                f"attention layer pattern {pattern!r} matches no {kind + '-' if kind else ''}attention layer of "
                f"{type(unet).__name__}; its layers are: {names}"
            )
        chosen += [name for name in matched if name not in chosen]
    return chosen


class AttentionMaps(dict):
    """Captured attention probabilities: ``{layer name: [(B, heads, queries, keys) per call, ...]}``.

    ``clear()`` empties it between passes; a guider that compares two passes reads each one's maps and clears.
    """

    def last(self) -> dict[str, Tensor]:
        """The latest call's maps of every layer."""
        return {name: calls[-1] for name, calls in self.items() if calls}


class CapturingAttnProcessor:
    """``AttnProcessor``'s computation, with the softmax probabilities stored in ``maps[name]``.

    Args:
        name: the layer's name, the key in ``maps``.
        maps: where to store.
        detach: store detached probabilities (reading); False keeps the graph (energies to backpropagate).
    """

    def __init__(self, name: str, maps: AttentionMaps, detach: bool = True) -> None:
        self.name = name
        self.maps = maps
        self.detach = detach

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Tensor:
        # The steps of diffusers' AttnProcessor.__call__ (0.30-0.42), in its order.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query, key, value = (attn.head_to_batch_dim(x) for x in (query, key, value))
        probabilities = attn.get_attention_scores(query, key, attention_mask)
        stored = probabilities.detach() if self.detach else probabilities
        self.maps.setdefault(self.name, []).append(stored.unflatten(0, (-1, attn.heads)))
        hidden_states = attn.batch_to_head_dim(torch.bmm(probabilities, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def capture_attention(
    unet: nn.Module, layers: str | Sequence[str] = "*attn1", *, kind: str | None = None, detach: bool = True
) -> Iterator[AttentionMaps]:
    """Store the attention probabilities of the chosen layers while the context is open.

    Args:
        unet: a diffusers model with ``attn_processors`` / ``set_attn_processor`` (``UNet2DConditionModel``).
        layers: ``fnmatch`` patterns on layer names (``"*attn1"``: every self-attention layer of an SD UNet,
            ``"up_blocks.*attn1"``, an exact name).
        kind: keep only ``self`` or ``cross`` layers among the matches.
        detach: store detached maps; False keeps them in the autograd graph.

    Yields:
        ``AttentionMaps``, filled by every UNet call inside the context. On exit (also on error) every layer gets
        its original processor back.
    """
    chosen = set(select_layers(unet, layers, kind))
    originals = dict(unet.attn_processors)
    maps = AttentionMaps()
    replaced = {
        name: CapturingAttnProcessor(name[: -len(PROCESSOR_SUFFIX)], maps, detach)
        if name[: -len(PROCESSOR_SUFFIX)] in chosen else processor
        for name, processor in originals.items()
    }
    unet.set_attn_processor(replaced)
    try:
        yield maps
    finally:
        unet.set_attn_processor(originals)


# ---------------------------------------------------------------------- block outputs
def find_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``, with an error that suggests the nearest names when it does not exist."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(f"{type(model).__name__} has no submodule {name!r}.{hint}") from None


def _main_tensor(value: Any) -> Tensor:
    """The feature map of a module's output: the tensor itself, or the first element of a tuple (down blocks
    return ``(hidden_states, residuals)``)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    raise TypeError(f"expected a tensor or a tuple starting with one; got {type(value).__name__}")


def _with_main_tensor(value: Any, tensor: Tensor) -> Any:
    if isinstance(value, Tensor):
        return tensor
    return type(value)((tensor, *value[1:]))


def _check_place(where: str) -> None:
    if where not in HOOK_PLACES:
        raise ValueError(f"where must be one of {', '.join(HOOK_PLACES)}; got {where!r}")


def _hook(module: nn.Module, where: str, transform: Callable[[Tensor], Tensor | None]):
    """Register a hook that calls ``transform`` on the module's input or output feature map; a returned tensor
    replaces it."""
    if where == "output":

        def on_output(_module: nn.Module, _args: Any, output: Any) -> Any:
            replacement = transform(_main_tensor(output))
            return None if replacement is None else _with_main_tensor(output, replacement)

        return module.register_forward_hook(on_output)

    def on_input(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            replacement = transform(args[0])
            return None if replacement is None else ((replacement, *args[1:]), kwargs)
        key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
        replacement = transform(kwargs[key])
        return None if replacement is None else (args, {**kwargs, key: replacement})

    return module.register_forward_pre_hook(on_input, with_kwargs=True)


@contextmanager
def module_hooks(model: nn.Module, transforms: Mapping[str, Callable[[Tensor], Tensor | None]],
                 where: str = "output") -> Iterator[None]:
    """Run ``transforms[name](feature map)`` on each named submodule's output (or input) inside the context; a
    returned tensor replaces the feature map, None leaves it. Hooks are removed on exit, also on error."""
    _check_place(where)
    modules = {name: find_module(model, name) for name in transforms}
    handles = []
    try:
        for name, transform in transforms.items():
            handles.append(_hook(modules[name], where, transform))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_outputs(model: nn.Module, names: str | Sequence[str], *, where: str = "output",
                    detach: bool = True) -> Iterator[dict[str, list[Tensor]]]:
    """Store the feature maps of the named submodules, one entry per call: ``{name: [(B, C, H, W), ...]}``.

    Args:
        model: any ``nn.Module`` (a UNet).
        names: submodule names (``mid_block`` is h-space, ``up_blocks.1.resnets.1`` a feature map).
        where: ``output``, or ``input`` for what the module receives (h before the mid block).
        detach: store detached tensors; False keeps them in the graph (feature energies).
    """
    names = [names] if isinstance(names, str) else list(names)
    stored: dict[str, list[Tensor]] = {name: [] for name in names}

    def keeper(name: str) -> Callable[[Tensor], None]:
        def keep(tensor: Tensor) -> None:
            stored[name].append(tensor.detach() if detach else tensor)

        return keep

    with module_hooks(model, {name: keeper(name) for name in names}, where):
        yield stored


@contextmanager
def replace_outputs(model: nn.Module, replacements: Mapping[str, Callable[[Tensor], Tensor]],
                    *, where: str = "output") -> Iterator[None]:
    """Replace the named submodules' feature maps by ``replacements[name](feature map)`` inside the context."""
    with module_hooks(model, replacements, where):
        yield


@contextmanager
def offset_outputs(model: nn.Module, offsets: Mapping[str, Tensor | Callable[[], Tensor | None]],
                   *, where: str = "output") -> Iterator[None]:
    """Add an offset to the named submodules' feature maps inside the context (h-space edits: ``h + delta_h``).

    Args:
        model: any ``nn.Module``.
        offsets: ``{name: delta}``; a tensor broadcast over the feature map, or a callable returning the delta (or
            None for none) at each call, so a sampler callback can set a per-timestep offset.
        where: ``output`` or ``input``.
    """

    def adder(offset: Tensor | Callable[[], Tensor | None]) -> Callable[[Tensor], Tensor | None]:
        def add(tensor: Tensor) -> Tensor | None:
            delta = offset() if callable(offset) else offset
            return None if delta is None else tensor + delta.to(tensor)

        return add

    with module_hooks(model, {name: adder(offset) for name, offset in offsets.items()}, where):
        yield

