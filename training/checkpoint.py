"""Hugging Face checkpoints that carry their lineage.

A checkpoint directory holds config.json, model.safetensors, generation_config.json,
the tokenizer files (with chat template) and lineage.json, so
`AutoModelForCausalLM.from_pretrained(dir)` and evaluation harnesses load it directly,
and "which data made this model?" is answered by the directory itself. Written to a
temp directory and renamed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipelines.contract import rounded
from pipelines.lake import atomic_directory
from pipelines.tokenize.tokenizer import portable_config

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def save_checkpoint(model, tokenizer_dir: Path, out_dir: Path, lineage: dict, extra_json: dict | None = None) -> Path:
    from transformers import AutoTokenizer, GenerationConfig

    raw = model.module if hasattr(model, "module") else model
    raw = getattr(raw, "_orig_mod", raw)  # unwrap torch.compile
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    end_of_turn = tok.convert_tokens_to_ids("<|end|>")
    context = int(raw.config.max_position_embeddings)
    with atomic_directory(Path(out_dir)) as tmp:
        raw.save_pretrained(str(tmp), safe_serialization=True)
        for name in TOKENIZER_FILES:
            src = Path(tokenizer_dir) / name
            if src.exists():
                shutil.copy(src, tmp / name)
        portable_config(tmp / "tokenizer_config.json", model_max_length=context)  # the model's context, not the tokenizer stage's
        # no max_new_tokens: it would override what callers ask for (lm-eval's max_gen_toks arrives as max_length)
        GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, end_of_turn],
                         pad_token_id=tok.pad_token_id, do_sample=False).save_pretrained(str(tmp))
        lineage = portable_lineage(dict(lineage, model_max_length=context))
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))
        for name, payload in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(payload))
    return Path(out_dir)


def portable_lineage(lineage: dict) -> dict:
    """Paths inside the lake (`lake_root`, given by orchestration) become relative to the lake root, so the
    record survives a moved or copied lake; floats keep 6 significant digits (0.025, not 0.024999999999999994)."""
    root = lineage.get("lake_root")

    def relative(value):
        if isinstance(value, dict):
            return {k: relative(v) for k, v in value.items()}
        if isinstance(value, list):
            return [relative(v) for v in value]
        if root and isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(root):
            return str(Path(value).relative_to(root))
        return value

    return rounded({k: relative(v) for k, v in lineage.items() if k != "lake_root"})


def checkpoint_hash(path: Path) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    with open(Path(path) / "model.safetensors", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
