"""A text encoder whose tokens carry their clause: colour binding for a Stable Diffusion UNet.

A shapes caption lists objects as clauses, ``"a small red circle at the top left and a large blue square at the
bottom"``. The UNet's cross-attention can only draw each colour on its own object if the tokens it attends to link
a colour word to the position words of the same clause. A text encoder without transformer layers (token plus
position embeddings) cannot: the ``left`` token knows nothing of ``red``. The shapes CLIP's own layers do link
words, but its contrastive objective kept only colour and size (``word_sensitivity``).

``clause_binding_encoder`` stacks new causal transformer layers on an existing encoder's embeddings and final layer
norm, with each layer's residual branches (``out_proj``, ``fc2``) zero-initialised, so before training its
``last_hidden_state`` equals the layer-free encoder's exactly, and a UNet trained against that encoder keeps working
while it learns to read the new information. ``clause_targets`` gives, for every token, the attributes of its own
clause that it can see (CLIP's causal mask lets a token see the words before it):

- a word of clause c, and the ``and`` after it, target the size, colour and shape of clause c once those words have
  been read, so the position words carry their object's colour, shape and size;
- the position of clause c is targeted at the ``and`` or end-of-text token after it (before that, ``top`` could
  still become ``top left``).

``ClauseHeads`` reads the four attributes from the hidden states with one linear layer each; ``clause_loss`` is
their cross-entropy over the targeted tokens, and ``clause_accuracy`` their accuracy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from interpedit.shapes.attributes import COLOURS, POSITION_WORDS, SHAPES, SIZES
from interpedit.user_errors import OptionError

CLAUSE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "size": SIZES,
    "colour": COLOURS,
    "shape": SHAPES,
    "position": POSITION_WORDS,
}
"""The attributes a clause names, with their values in class-id order."""

IGNORE = -100
"""Target of a token that has no label for an attribute (``F.cross_entropy``'s ``ignore_index``)."""


def clause_binding_encoder(text_encoder: Any, num_layers: int) -> Any:
    """A ``CLIPTextModel`` with ``text_encoder``'s embeddings and final layer norm and ``num_layers`` new layers.

    The new layers are initialised as transformers initialises them, then their residual branches (attention
    ``out_proj`` and MLP ``fc2``, weights and biases) are zeroed, so every layer is the identity and the new
    encoder's ``last_hidden_state`` equals ``text_encoder``'s when that one has no layers. ``text_encoder`` is
    usually the shapes pipeline's layer-free one; its own layers, if any, are not carried over.
    """
    from transformers import CLIPTextModel

    if num_layers < 1:
        raise OptionError(f"clause_binding_encoder.num_layers: {num_layers}; it needs at least 1 new layer")
    config = copy.deepcopy(text_encoder.config)
    config.num_hidden_layers = num_layers
    model = CLIPTextModel(config)
    source = _transformer(text_encoder).state_dict()
    target = _transformer(model)
    kept = {key: value for key, value in source.items() if not key.startswith("encoder.")}
    missing = target.load_state_dict(kept, strict=False).missing_keys
    unexpected = [key for key in missing if not key.startswith("encoder.")]
    if unexpected:
        raise OptionError(f"clause_binding_encoder: the source text encoder lacks {unexpected}")
    for layer in target.encoder.layers:
        for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
    model.config.architectures = ["CLIPTextModel"]
    return model


def _transformer(text_encoder: Any) -> nn.Module:
    # transformers < 5 nests the transformer as ``text_model``; v5 flattens it into the model itself.
    return getattr(text_encoder, "text_model", text_encoder)


def trainable_layers(text_encoder: Any) -> list[nn.Parameter]:
    """The parameters of the transformer layers (the embeddings and final layer norm stay frozen)."""
    return list(_transformer(text_encoder).encoder.parameters())


def clause_targets(captions: Sequence[str], length: int) -> dict[str, Tensor]:
    """Per-token targets (B, ``length``) of each attribute in ``CLAUSE_ATTRIBUTES``, ``IGNORE`` where unlabelled.

    Token 0 is the start-of-text token and word ``j`` of a caption is token ``j + 1`` (a word-level tokenizer),
    followed by the end-of-text token, as the shapes tokenizer encodes captions.
    """
    targets = {name: torch.full((len(captions), length), IGNORE, dtype=torch.long) for name in CLAUSE_ATTRIBUTES}
    for row, caption in enumerate(captions):
        words = caption.split(" ")
        if len(words) + 2 > length:
            raise OptionError(f"clause_targets: caption {caption!r} has {len(words)} words; {length - 2} fit")
        clauses = _clauses(words)
        for start, end, values in clauses:
            # ``end`` is the index of the token after the clause: ``and`` or the end-of-text token.
            for token in range(start, end + 1):
                for name, (index, value) in values.items():
                    seen = index < token if name == "position" else index <= token
                    if seen and (name != "position" or token == end):
                        targets[name][row, token] = value
    return targets


def _clauses(words: Sequence[str]) -> list[tuple[int, int, dict[str, tuple[int, int]]]]:
    """(first token, token after the clause, {attribute: (token of its last word, class id)}) per clause."""
    clauses, start = [], 0
    for stop in [i for i, word in enumerate(words) if word == "and"] + [len(words)]:
        clause = words[start:stop]
        values: dict[str, tuple[int, int]] = {}
        for offset, word in enumerate(clause):
            token = start + offset + 1
            for name in ("size", "colour", "shape"):
                if word in CLAUSE_ATTRIBUTES[name]:
                    values[name] = (token, CLAUSE_ATTRIBUTES[name].index(word))
        if "the" in clause:  # the position phrase is everything after the clause's last "the"
            last_the = len(clause) - 1 - clause[::-1].index("the")
            tail = " ".join(clause[last_the + 1:])
            if tail in POSITION_WORDS:
                values["position"] = (start + len(clause), POSITION_WORDS.index(tail))
        clauses.append((start + 1, stop + 1, values))
        start = stop + 1
    return clauses


class ClauseHeads(nn.Module):
    """One linear read-out per clause attribute over a text encoder's hidden states."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(hidden_size, len(values)) for name, values in CLAUSE_ATTRIBUTES.items()})

    def forward(self, hidden: Tensor) -> dict[str, Tensor]:
        """Logits (B, L, classes) of each attribute."""
        return {name: head(hidden) for name, head in self.heads.items()}


def clause_loss(logits: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
    """Mean over attributes of the cross-entropy on their labelled tokens."""
    losses = [
        F.cross_entropy(logits[name].flatten(0, 1), targets[name].to(logits[name].device).flatten(), ignore_index=IGNORE)
        for name in CLAUSE_ATTRIBUTES
    ]
    return torch.stack(losses).mean()


@torch.no_grad()
def clause_accuracy(logits: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, float]:
    """Accuracy of each attribute on its labelled tokens."""
    result = {}
    for name in CLAUSE_ATTRIBUTES:
        target = targets[name].to(logits[name].device)
        labelled = target != IGNORE
        hits = (logits[name].argmax(-1) == target) & labelled
        result[name] = float(hits.sum() / labelled.sum().clamp_min(1))
    return result
