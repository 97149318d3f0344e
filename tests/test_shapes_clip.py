"""The shapes CLIP: tokenizer, loss, retrieval protocol and save/load round trip."""

import math

import pytest
import torch
from transformers import AutoTokenizer

from interpedit.backbones.shapes_tokenizer import build_shapes_tokenizer
from interpedit.clip import ShapesCLIP, caption_retrieval_hits, clip_contrastive_loss

WORDS = ["a", "small", "large", "red", "blue", "circle", "square", "at", "the", "top", "left", "and"]
TINY_VISION = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}
TINY_TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "max_position_embeddings": 16}


def tiny_clip() -> ShapesCLIP:
    torch.manual_seed(0)
    return ShapesCLIP(WORDS, vision_config=TINY_VISION, text_config=TINY_TEXT, embed_dim=8)


def test_tokenizer_is_one_id_per_word_and_round_trips(tmp_path):
    tokenizer = build_shapes_tokenizer(WORDS)
    ids = tokenizer("a small red circle at the top left")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == 8 + 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a small red circle at the top left"
    assert tokenizer("a purple circle")["input_ids"][2] == tokenizer.unk_token_id
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("A Large blue square")["input_ids"] == tokenizer("a large blue square")["input_ids"]


def test_text_tower_pools_at_the_end_token():
    # transformers pools CLIP text at argmax(input_ids) when eos_token_id == 2; ours must pool at <eos>.
    model = tiny_clip().eval()
    assert model.text_model.config.eos_token_id == model.tokenizer.eos_token_id != 2
    tokens = model.tokenize(["a red circle", "a red circle and a blue square"])
    hidden = model.text_model.text_model(**tokens).last_hidden_state
    pooled = model.text_model.text_model(**tokens).pooler_output
    eos_positions = tokens["attention_mask"].sum(dim=1) - 1
    torch.testing.assert_close(pooled, hidden[torch.arange(2), eos_positions])


def test_contrastive_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    row = -0.5 * (math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.exp(3) / (math.exp(1) + math.exp(3))))
    col = -0.5 * (math.log(math.exp(2) / (math.exp(2) + math.exp(1))) + math.log(math.exp(3) / (1 + math.exp(3))))
    assert clip_contrastive_loss(logits).item() == pytest.approx(0.5 * (row + col), rel=1e-6)


def test_retrieval_groups_and_duplicate_captions():
    captions = ["x", "y", "x", "z", "w"]
    logits = torch.full((5, 5), -1.0)
    logits[0, 2] = 5.0  # image 0 picks caption 2, which has the same text: a hit
    logits[1, 0] = 5.0  # image 1 picks caption 0 ("x" != "y"): a miss
    logits[2, 2] = 5.0
    logits[3, 3] = 5.0
    image_hits, text_hits = caption_retrieval_hits(logits, captions, group_size=4)
    assert image_hits.tolist() == [True, False, True, True]  # the fifth sample is a short group, left out
    assert text_hits.shape == (4,)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_clip().eval()
    model.save_pretrained(tmp_path / "clip")
    reloaded = ShapesCLIP.load(str(tmp_path / "clip")).eval()
    images = torch.rand(3, 3, 16, 16)
    tokens = model.tokenize(["a red circle", "a blue square", "a small red square at the top left"])
    torch.testing.assert_close(reloaded(images, **tokens), model(images, **tokens))
    assert reloaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()


def test_training_separates_two_captions():
    # Two visually distinct images and their captions: a few steps must make the pairing unambiguous.
    model = tiny_clip()
    images = torch.zeros(2, 3, 16, 16)
    images[0, 0] = 1.0
    images[1, 2] = 1.0
    tokens = model.tokenize(["a red square", "a blue square"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        loss = clip_contrastive_loss(model(images, **tokens))
        loss.backward()
        optimizer.step()
    assert model(images, **tokens).argmax(dim=1).tolist() == [0, 1]
