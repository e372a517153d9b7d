"""Chat training data as lake stages: SFT conversations and preference pairs, decontaminated once.

Both read JSONL (by default the bundled sample under CHAT_DIR), drop every item that shares a
word n-gram with an evaluation prompt, and write `data.jsonl` into the lake. Training jobs
read that file as it is; nothing downstream decontaminates again.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines.contract import Stage, StageContext, config_to_dict, param, require
from pipelines.jsonl import load_jsonl, read_valid_rows, requires
from pipelines.lake import atomic_write_bytes, file_hash

_WORD = re.compile(r"\w+")


ROLES = ("system", "user", "assistant")


def conversation_problem(row: dict) -> str | None:
    """Why a {"messages": [...]} row cannot train (None = it can): roles, order, content types."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty list of {role, content} objects"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return f"messages[{i}] needs `role` and `content`"
        if m["role"] not in ROLES:
            return f"messages[{i}].role is {m['role']!r}; use one of {list(ROLES)}"
        if not isinstance(m["content"], str):
            return f"messages[{i}].content must be a string, not {type(m['content']).__name__}"
    turns = [m["role"] for m in messages if m["role"] != "system"]
    if any(m["role"] == "system" for m in messages[1:]):
        return "a system message may only come first"
    if not turns or turns[0] != "user" or any(a == b for a, b in zip(turns, turns[1:])) or turns[-1] != "assistant":
        return f"turns must alternate user/assistant, starting with user and ending with assistant (got {turns})"
    return None


def pair_problem(row: dict) -> str | None:
    """Why a preference row cannot train (None = it can)."""
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            return f"`{key}` must be a non-empty string"
    return None


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


def eval_prompts_of(path: Path) -> list[str]:
    return [r["prompt"] for r in load_jsonl(path, requires("prompt"))] if path.exists() else []


def _valid_rows(ctx: StageContext, path: Path, problem_of) -> tuple[list[dict], list[str]]:
    """Valid rows; invalid ones are counted, logged with file:line and skipped; none valid is an error."""
    rows, problems = read_valid_rows(path, problem_of)
    for p in problems[:5]:
        ctx.warn(f"skipped {p}")
    if not rows:
        raise ValueError(f"no usable rows in {path}: " + "; ".join(problems[:5]))
    return rows, problems


def _write(ctx: StageContext, asset: str, rows: list[dict], manifest: dict) -> dict:
    path = ctx.lake.partition_dir(asset) / "data.jsonl"
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    manifest = dict(manifest, asset=asset, path=str(path), rows=len(rows), content_hash=file_hash(path), preview=rows[:3])
    ctx.lake.write_manifest(asset, None, manifest)
    return manifest


def build_sft_dataset(ctx: StageContext, cfg: ChatDataConfig) -> dict:
    path, eval_path = _paths(ctx, cfg, "sft.jsonl")
    rows, problems = _valid_rows(ctx, path, conversation_problem)
    kept, dropped = decontaminate(rows, lambda c: [m["content"] for m in c["messages"] if m["role"] == "user"],
                                  eval_prompts_of(eval_path), cfg.ngram)
    return _write(ctx, "sft_dataset", kept, {
        "source": str(path), "eval_prompts": str(eval_path), "decontaminated": len(dropped), "conversations": len(kept),
        "multi_turn": sum(len(c["messages"]) > 2 for c in kept), "invalid_rows": len(problems), "errors": problems[:20],
        "config": config_to_dict(cfg)})


def build_preference_dataset(ctx: StageContext, cfg: PreferenceDataConfig) -> dict:
    path, eval_path = _paths(ctx, cfg, "preferences.jsonl")
    rows, problems = _valid_rows(ctx, path, pair_problem) if cfg.mode in ("file", "both") else ([], [])
    if cfg.mode in ("sampled", "both"):
        from training.dpo import sample_pairs

        prompts = sorted({r["prompt"] for r in load_jsonl(path, requires("prompt"))})
        rows += sample_pairs(str(ctx.lake.checkpoint_dir("sft_model")), prompts, k=cfg.samples_per_prompt)
    kept, dropped = decontaminate(rows, lambda r: [r["prompt"]], eval_prompts_of(eval_path), cfg.ngram)
    return _write(ctx, "preference_dataset", kept, {
        "source": str(path), "mode": cfg.mode, "eval_prompts": str(eval_path), "decontaminated": len(dropped), "pairs": len(kept),
        "invalid_rows": len(problems), "errors": problems[:20], "config": config_to_dict(cfg)})


SFT_DATASET = Stage(
    name="sft_dataset", config=ChatDataConfig, run=build_sft_dataset, reads_inputs=True,
    description="Instruction conversations ({\"messages\": [{\"role\", \"content\"}, ...]}, multi-turn allowed), "
                "decontaminated against the evaluation prompts (word n-gram overlap).")
PREFERENCE_DATASET = Stage(
    name="preference_dataset", config=PreferenceDataConfig, run=build_preference_dataset, inputs=("sft_model",), reads_inputs=True,
    description="Preference pairs (prompt, chosen, rejected) for DPO, decontaminated against the evaluation prompts.")


def split_by_prompt(pairs: list[tuple[str, Any]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Held-out and training items of (prompt, item) pairs, each prompt wholly on one side: a prompt ranked
    more than once (two rejected answers) would otherwise let held-out accuracy measure memory, not generalisation."""
    prompts = sorted({p for p, _ in pairs})
    per_prompt = Counter(p for p, _ in pairs)
    want, held, n_held = max(1, round(len(pairs) * val_fraction)), set(), 0
    for i in np.random.default_rng(seed).permutation(len(prompts)):
        if n_held >= want or len(held) == len(prompts) - 1:
            break
        held.add(prompts[i])
        n_held += per_prompt[prompts[i]]
    return [e for p, e in pairs if p in held], [e for p, e in pairs if p not in held]
