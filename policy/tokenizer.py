"""Byte-level tokenizer for the policy: one token per UTF-8 byte plus <pad>, <bos>, <eos>.

Built with the `tokenizers` library and wrapped in `PreTrainedTokenizerFast`, so it is saved beside
the weights and `transformers.AutoTokenizer` loads it back. For ASCII text (our arithmetic and code
domains) it is a character-level tokenizer, which a tiny model can learn quickly.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
VOCAB_SIZE = len(SPECIAL_TOKENS) + 256


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, the alphabet of the ByteLevel pre-tokenizer."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Return the byte-level tokenizer: id = 3 + byte value; encoding prepends <bos>, never appends <eos>.

    Callers that train on completions append `tokenizer.eos_token_id` themselves and encode completion
    text with `add_special_tokens=False`.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for byte, char in sorted(_byte_to_unicode().items()):
        vocab[char] = len(SPECIAL_TOKENS) + byte
    # BPE without merges splits every pre-token into single bytes: a pure byte-level model.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, BOS_ID)],
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        model_max_length=1 << 20,
    )
