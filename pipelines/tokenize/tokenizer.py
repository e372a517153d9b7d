"""Byte-level BPE tokenizer: trained on a sample of the corpus, or loaded from a user's tokenizer.json.

Saved with `save_pretrained`, so `AutoTokenizer.from_pretrained(dir)` loads it with
bos/eos/pad set, `model_max_length` set, and a chat template whose assistant turns are
wrapped in `{% generation %}` so `return_assistant_tokens_mask=True` gives the loss mask
(the assistant content plus its end-of-turn token).

Special tokens cannot be injected from document text: shards are encoded with
`encode_special_tokens=True`, which treats a literal "<|user|>" in a web page as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SYSTEM, USER, ASSISTANT, END_OF_TURN = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [EOS, PAD, SYSTEM, USER, ASSISTANT, END_OF_TURN]
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}" + SYSTEM + "{{ message['content'] }}" + END_OF_TURN +
    "{%- elif message['role'] == 'user' -%}" + USER + "{{ message['content'] }}" + END_OF_TURN +
    "{%- elif message['role'] == 'assistant' -%}" + ASSISTANT +
    "{% generation %}{{ message['content'] }}" + END_OF_TURN + "{% endgeneration %}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}"
)


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization, no prefix space) with our special tokens first."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def load_tokenizer_json(path: Path) -> Tokenizer:
    """A user's tokenizer.json, with our special tokens added if it lacks them."""
    tok = Tokenizer.from_file(str(path))
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens(missing)
    return tok


def save_hf(tok: Tokenizer, out_dir: Path, model_max_length: int) -> None:
    """Write a transformers-loadable tokenizer directory (tokenizer.json, config, chat template)."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD, unk_token=None,
                                 model_max_length=model_max_length, chat_template=CHAT_TEMPLATE,
                                 additional_special_tokens=[SYSTEM, USER, ASSISTANT, END_OF_TURN])
    hf.save_pretrained(str(out_dir))
    portable_config(Path(out_dir) / "tokenizer_config.json")


def portable_config(path: Path, model_max_length: int | None = None) -> None:
    """Make tokenizer_config.json load in transformers 4.x as well as 5.x.

    transformers 5 writes its own class name (`TokenizersBackend`) and the special tokens as an
    `extra_special_tokens` list; 4.x knows neither and fails. `PreTrainedTokenizerFast` and
    `additional_special_tokens` mean the same thing to both (a test loads the directory in 4.57
    and 5.x and compares encodings and the chat template).
    """
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    if isinstance(cfg.get("extra_special_tokens"), list):
        cfg["additional_special_tokens"] = cfg.pop("extra_special_tokens")
    if model_max_length is not None:
        cfg["model_max_length"] = model_max_length
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_for_encoding(tokenizer_dir: Path) -> Tokenizer:
    """The raw tokenizer for bulk encoding, with special-token injection from text disabled."""
    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    tok.encode_special_tokens = True
    return tok


def fertility(tok: Tokenizer, groups: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per group (language or source): tokens per word and bytes per token."""
    out = {}
    for name, texts in sorted(groups.items()):
        if not texts:
            continue
        n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
        words = sum(len(t.split()) for t in texts)
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        out[name] = {"docs": len(texts), "tokens_per_word": round(n_tokens / max(words, 1), 3),
                     "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3)}
    return out


def tokenizer_hash(tokenizer_dir: Path) -> str:
    """Content hash of the tokenizer definition (vocab, merges, specials, template)."""
    import xxhash

    h = xxhash.xxh3_128()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        p = Path(tokenizer_dir) / name
        if p.exists():
            data = p.read_text()
            h.update(json.dumps(json.loads(data), sort_keys=True).encode() if name.endswith(".json") else data.encode())
    return h.hexdigest()
