"""Chat training data as lake stages: SFT conversations and preference pairs, decontaminated once.

Both read JSONL (by default the bundled sample under CHAT_DIR), drop every item that shares a
word n-gram with an evaluation prompt, and write `data.jsonl` into the lake. Training jobs
read that file as it is; nothing downstream decontaminates again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.contract import Stage, StageContext, config_to_dict, param, require
from pipelines.lake import atomic_write_bytes, file_hash

_WORD = re.compile(r"\w+")


def load_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg}); expected one object per line") from exc
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing {missing}; each line needs {list(required)}")
        rows.append(row)
    return rows


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def decontaminate(items: list[dict], texts_of, eval_prompts: list[str], n: int = 8) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): an item is dropped if any of its texts shares a word n-gram with an eval prompt
    (prompts shorter than n words must match whole)."""
    banned = set()
    for p in eval_prompts:
        banned |= ngrams(p, n)
    kept, dropped = [], []
    for item in items:
        grams = set()
        for t in texts_of(item):
            grams |= ngrams(t, n)
        (dropped if grams & banned else kept).append(item)
    return kept, dropped


@dataclass(frozen=True)
class ChatDataConfig:
    """Where the chat data comes from and how it is decontaminated."""

    path: str | None = param(None, "JSONL input; None = the bundled sample under CHAT_DIR")
    eval_prompts_path: str | None = param(None, "evaluation prompts to decontaminate against; None = CHAT_DIR/eval_prompts.jsonl")
    ngram: int = param(8, "word n-gram shared with an eval prompt that drops an item")

    def __post_init__(self):
        require(self.ngram > 0, self, "ngram", "must be > 0")


@dataclass(frozen=True)
class PreferenceDataConfig(ChatDataConfig):
    """`file`: pairs from JSONL (prompt, chosen, rejected); `sampled`: sample the SFT model k times per prompt
    and rank by rule; `both`: the union."""

    mode: Literal["file", "sampled", "both"] = param("file", "where pairs come from")
    samples_per_prompt: int = param(4, "sampled mode: answers drawn per prompt")


def _paths(ctx: StageContext, cfg: ChatDataConfig, default: str) -> tuple[Path, Path]:
    if ctx.inputs is None and not (cfg.path and cfg.eval_prompts_path):
        raise ValueError("chat data needs CHAT_DIR (StageContext.inputs) or explicit paths")
    chat = ctx.inputs.chat_dir if ctx.inputs else Path()
    return Path(cfg.path or chat / default), Path(cfg.eval_prompts_path or chat / "eval_prompts.jsonl")


def _eval_prompts(path: Path) -> list[str]:
    return [r["prompt"] for r in load_jsonl(path, ("prompt",))] if path.exists() else []


def _write(ctx: StageContext, asset: str, rows: list[dict], manifest: dict) -> dict:
    path = ctx.lake.partition_dir(asset) / "data.jsonl"
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    manifest = dict(manifest, asset=asset, path=str(path), rows=len(rows), content_hash=file_hash(path), preview=rows[:3])
    ctx.lake.write_manifest(asset, None, manifest)
    return manifest


def build_sft_dataset(ctx: StageContext, cfg: ChatDataConfig) -> dict:
    path, eval_path = _paths(ctx, cfg, "sft.jsonl")
    rows = load_jsonl(path, ("messages",))
    kept, dropped = decontaminate(rows, lambda c: [m["content"] for m in c["messages"] if m["role"] == "user"],
                                  _eval_prompts(eval_path), cfg.ngram)
    return _write(ctx, "sft_dataset", kept, {
        "source": str(path), "eval_prompts": str(eval_path), "decontaminated": len(dropped), "conversations": len(kept),
        "multi_turn": sum(len(c["messages"]) > 2 for c in kept), "config": config_to_dict(cfg)})


def build_preference_dataset(ctx: StageContext, cfg: PreferenceDataConfig) -> dict:
    path, eval_path = _paths(ctx, cfg, "preferences.jsonl")
    rows = load_jsonl(path, ("prompt", "chosen", "rejected")) if cfg.mode in ("file", "both") else []
    if cfg.mode in ("sampled", "both"):
        from training.dpo import sample_pairs

        prompts = sorted({r["prompt"] for r in load_jsonl(path, ("prompt",))})
        rows += sample_pairs(str(ctx.lake.checkpoint_dir("sft_model")), prompts, k=cfg.samples_per_prompt)
    kept, dropped = decontaminate(rows, lambda r: [r["prompt"]], _eval_prompts(eval_path), cfg.ngram)
    return _write(ctx, "preference_dataset", kept, {
        "source": str(path), "mode": cfg.mode, "eval_prompts": str(eval_path), "decontaminated": len(dropped), "pairs": len(kept),
        "config": config_to_dict(cfg)})


SFT_DATASET = Stage(
    name="sft_dataset", config=ChatDataConfig, run=build_sft_dataset, reads_inputs=True,
    description="Instruction conversations ({\"messages\": [{\"role\", \"content\"}, ...]}, multi-turn allowed), "
                "decontaminated against the evaluation prompts (word n-gram overlap).")
PREFERENCE_DATASET = Stage(
    name="preference_dataset", config=PreferenceDataConfig, run=build_preference_dataset, inputs=("sft_model",), reads_inputs=True,
    description="Preference pairs (prompt, chosen, rejected) for DPO, decontaminated against the evaluation prompts.")
