"""The miniature's tokenizer: byte-level BPE with Qwen2's normalizer and pre-tokenizer, trained on the world's text.

Its own module so that posttrain.mini.world (which trains it on a world) and posttrain.mini.build (which saves it
with the set-up) both use it without importing each other.
"""
from __future__ import annotations

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts, vocab_size: int):
    """Byte-level BPE with Qwen2's normalizer and pre-tokenizer (digits one by one), as a fast HF tokenizer.

    The pipeline must equal Qwen2Tokenizer's: AutoTokenizer on a dir whose config says qwen2 rebuilds it that way.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from posttrain.data import CHATML_TEMPLATE_WITH_GENERATION
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"], model_max_length=1_000_000)
    hf.chat_template = CHATML_TEMPLATE_WITH_GENERATION  # the template SFT uses (assistant_only_loss markers)
    return hf
