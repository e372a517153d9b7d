"""Supervised fine-tuning: chat-formatted examples, loss only on assistant tokens, packed.

Examples are rendered with the tokenizer's chat template; the template's
`{% generation %}` markers give the assistant mask, so the loss covers each answer and
its end-of-turn token and nothing the user wrote. Whole examples are packed greedily
into fixed-length rows (never split); the rest of a row is padding without loss.
Examples that share a word n-gram with an evaluation prompt are dropped first.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.fused_llama import FusedLlama

_WORD = re.compile(r"\w+")


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


def encode_conversation(tok, messages: list[dict], max_len: int) -> tuple[list[int], list[int]] | None:
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    if len(ids) > max_len or not any(mask):
        return None
    return ids, [i if m else -100 for i, m in zip(ids, mask)]


def pack(examples: list[tuple[list[int], list[int]]], row_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy first-fit packing of whole examples into rows of `row_len` tokens."""
    rows: list[tuple[list[int], list[int]]] = []
    for ids, labels in sorted(examples, key=lambda e: -len(e[0])):
        for r in rows:
            if len(r[0]) + len(ids) <= row_len:
                r[0].extend(ids)
                r[1].extend(labels)
                break
        else:
            rows.append((list(ids), list(labels)))
    x = np.full((len(rows), row_len), pad_id, dtype=np.int64)
    y = np.full((len(rows), row_len), -100, dtype=np.int64)
    for i, (ids, labels) in enumerate(rows):
        x[i, :len(ids)] = ids
        y[i, :len(labels)] = labels
    return x, y


@dataclass
class SftJob:
    base_dir: str
    data_path: str
    out_dir: str
    eval_prompts_path: str | None = None
    steps: int = 120
    batch_size: int = 8
    lr: float = 1e-3
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    lineage: dict | None = None


def prepare_sft(job: SftJob, tok, row_len: int) -> dict:
    convs = load_jsonl(Path(job.data_path), ("messages",))
    eval_prompts = [r["prompt"] for r in load_jsonl(Path(job.eval_prompts_path), ("prompt",))] if job.eval_prompts_path else []
    kept, dropped = decontaminate(convs, lambda c: [m["content"] for m in c["messages"] if m["role"] == "user"], eval_prompts)
    encoded = [e for e in (encode_conversation(tok, c["messages"], row_len) for c in kept) if e]
    rng = np.random.default_rng(job.seed)
    order = rng.permutation(len(encoded))
    n_val = max(1, int(len(encoded) * job.val_fraction))
    val = [encoded[i] for i in order[:n_val]]
    train = [encoded[i] for i in order[n_val:]]
    return {"train": pack(train, row_len, tok.pad_token_id), "val": pack(val, row_len, tok.pad_token_id),
            "examples": len(convs), "decontaminated": len(dropped), "too_long_or_empty": len(kept) - len(encoded)}


def run_sft(job: SftJob, log=print) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loop.configure_threads()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(job.base_dir)
    model = AutoModelForCausalLM.from_pretrained(job.base_dir)
    row_len = model.config.max_position_embeddings
    data = prepare_sft(job, tok, row_len)
    (tx, ty), (vx, vy) = data["train"], data["val"]
    cfg = loop.TrainConfig(max_steps=job.steps, batch_size=job.batch_size, lr=job.lr, warmup_steps=max(1, job.steps // 20),
                           weight_decay=0.0, eval_every=max(1, job.steps // 6), log_every=max(1, job.steps // 12),
                           checkpoint_every=max(1, job.steps // 4), seed=job.seed, device=job.device)

    def batches(step, micro, rank):
        rng = np.random.default_rng([job.seed, step, micro, rank])
        idx = rng.integers(0, len(tx), size=job.batch_size)
        return torch.from_numpy(tx[idx]), torch.from_numpy(ty[idx])

    val_batches = [(torch.from_numpy(vx[i:i + job.batch_size]), torch.from_numpy(vy[i:i + job.batch_size]))
                   for i in range(0, len(vx), job.batch_size)]
    device = loop.pick_device(job.device)
    trainee = FusedLlama.from_hf(model).to(device)  # the stock copy stays on CPU for saving
    initial_val = loop.evaluate(trainee, val_batches, device)
    state = loop.train(trainee, cfg, batches, val_batches, Path(job.out_dir + ".state"), log=log, context=row_len)
    trainee.to_hf(model)
    metrics = {"initial_val_loss": initial_val, "final_val_loss": loop.evaluate(trainee, val_batches, device),
               "final_train_loss": state.history[-1]["train_loss"], "steps": state.step, "tokens_seen": state.tokens_seen,
               "train_rows": int(len(tx)), "examples": data["examples"], "decontaminated": data["decontaminated"],
               "seconds": time.perf_counter() - t0}
    lineage = dict(job.lineage or {}, stage="sft", base_checkpoint=job.base_dir,
                   base_checkpoint_hash=checkpoint_hash(Path(job.base_dir)), sft_data=job.data_path, job=asdict(job),
                   metrics=metrics)
    save_checkpoint(model, Path(job.base_dir), Path(job.out_dir), lineage, {"history.json": state.history})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": state.history, "path": job.out_dir}
