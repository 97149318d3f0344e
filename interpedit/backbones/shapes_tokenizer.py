"""A word-level tokenizer for shapes-world captions, built offline with the tokenizers library.

The shapes world has a closed vocabulary (``interpedit.shapes.vocabulary()``), so a word-level model
is exact: every caption maps to one id per word, with no merges to learn and nothing to download.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
# transformers' CLIP text model pools at argmax(input_ids) when eos_token_id == 2 (a quirk kept for the
# original OpenAI vocabulary, where <|endoftext|> has the largest id). Our end token must therefore not
# have id 2, so that the model pools at the first end token instead.
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)


def build_shapes_tokenizer(vocabulary: Sequence[str], model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer over a closed vocabulary.

    Args:
        vocabulary: every word a caption can contain; order fixes the ids, duplicates are ignored.
        model_max_length: longest sequence, including the begin and end tokens.

    Returns:
        A transformers fast tokenizer: ``save_pretrained``/``from_pretrained`` work as for any other.
    """
    words = [w.lower() for w in dict.fromkeys(vocabulary) if w.lower() not in SPECIAL_TOKENS]
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
    )
