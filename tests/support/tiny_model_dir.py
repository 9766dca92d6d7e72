"""A tiny random Wan 2.1 I2V model saved with `save_pretrained`, complete enough to take a prompt string.

`tiny_wan.wan21` passes prompt embeddings and has no text encoder; this one adds a UMT5 text encoder built
from a config and a Unigram tokenizer built with the `tokenizers` library (T5's tokenizer model) wrapped in a
transformers fast tokenizer, and swaps the image encoder for the `CLIPVisionModel` class Wan checkpoints use.
Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import WanImageToVideoPipeline
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import CLIPVisionModel, PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from . import tiny_wan

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # T5's ids 0, 1 and 2
PIECES = ("▁", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'-")


def tokenizer() -> PreTrainedTokenizerFast:
    """A character-level Unigram tokenizer that, like T5's, ends every text with `</s>` and pads with `<pad>`."""
    vocabulary = [(token, 0.0) for token in SPECIAL_TOKENS] + [(piece, -1.0) for piece in PIECES]
    model = Tokenizer(models.Unigram(vocabulary, unk_id=SPECIAL_TOKENS.index("<unk>")))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def text_encoder(vocab_size: int) -> UMT5EncoderModel:
    """A one-layer UMT5 encoder whose width matches the tiny transformer's text input."""
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=tiny_wan.TEXT_DIM,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    )
    return UMT5EncoderModel(config)


def wan21_with_text_encoder() -> WanImageToVideoPipeline:
    """The tiny Wan 2.1 I2V pipeline of `tiny_wan.wan21` with a text encoder and tokenizer, seeded."""
    components = tiny_wan.wan21().components
    torch.manual_seed(1)
    words = tokenizer()
    return WanImageToVideoPipeline(
        **{
            **components,
            "tokenizer": words,
            "text_encoder": text_encoder(len(words)),
            "image_encoder": CLIPVisionModel(components["image_encoder"].config),
        }
    )


def save_wan21(directory: str | Path) -> Path:
    """Write the tiny Wan 2.1 I2V model into `directory` (as `save_pretrained` does) and return the directory."""
    directory = Path(directory)
    wan21_with_text_encoder().save_pretrained(directory)
    return directory
