"""Supervised fine-tuning: chat-formatted examples, loss only on assistant tokens, packed.

Examples are rendered with the tokenizer's chat template; the template's
`{% generation %}` markers give the assistant mask, so the loss covers each answer and
its end-of-turn token and nothing the user wrote. Whole examples are packed greedily
into fixed-length rows (never split); the rest of a row is padding without loss.
Decontamination against evaluation prompts happens once, when the dataset is built
(`training.datasets`), not here.

A share of every batch (`pretrain_mix`) is pretraining windows with the full language-model
loss (rehearsal, as InstructGPT's PPO-ptx mixes pretraining gradients): a small model fine-tuned
on chat alone forgets its pretraining (demo: validation loss 0.75 -> 4.69; with rehearsal 0.80).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipelines.contract import config_to_dict, param, require
from pipelines.jsonl import read_valid_rows
from pipelines.lake import file_hash
from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.data import ShardWindows
from training.datasets import conversation_problem
from training.fused_llama import FusedLlama


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


@dataclass(frozen=True)
class SftConfig:
    """How to fine-tune on conversations (loss on assistant tokens only, packed rows)."""

    steps: int = param(150, "optimizer steps")
    batch_size: int = param(8, "packed rows per step")
    lr: float = param(1e-3, "peak learning rate (short warmup, then cosine)")
    pretrain_mix: float = param(0.125, "share of each batch's rows that are pretraining windows (full LM loss), so the "
                                      "model keeps what pretraining taught; 0 = chat only")
    val_fraction: float = param(0.1, "share of conversations held out for validation loss")
    seed: int = param(0, "seed of the split and the batch order")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda ...")

    def __post_init__(self):
        for name in ("steps", "batch_size", "lr"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(0 < self.val_fraction < 1, self, "val_fraction", "must be between 0 and 1 (exclusive)")
        require(0 <= self.pretrain_mix < 1, self, "pretrain_mix", "must be in [0, 1)")


@dataclass
class SftJob:
    """One SFT run: the config plus the files it reads and writes (the CLI's JSON). The data is
    expected decontaminated already (the `sft_dataset` stage does it)."""

    base_dir: str
    data_path: str
    out_dir: str
    config: SftConfig = field(default_factory=SftConfig)
    shards_dir: str | None = None  # the pretraining token shards, rehearsed when config.pretrain_mix > 0
    lineage: dict | None = None


def prepare_sft(job: SftJob, tok, row_len: int) -> dict:
    convs, problems = read_valid_rows(Path(job.data_path), conversation_problem)
    if problems:
        raise ValueError("SFT data has invalid rows (build it with the sft_dataset stage, which skips them): " + "; ".join(problems[:5]))
    encoded = [e for e in (encode_conversation(tok, c["messages"], row_len) for c in convs) if e]
    rng = np.random.default_rng(job.config.seed)
    order = rng.permutation(len(encoded))
    n_val = max(1, int(len(encoded) * job.config.val_fraction))
    val = [encoded[i] for i in order[:n_val]]
    train = [encoded[i] for i in order[n_val:]]
    return {"train": pack(train, row_len, tok.pad_token_id), "val": pack(val, row_len, tok.pad_token_id),
            "examples": len(convs), "too_long_or_empty": len(convs) - len(encoded)}


def run_sft(job: SftJob, log=print) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loop.configure_threads()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(job.base_dir)
    model = AutoModelForCausalLM.from_pretrained(job.base_dir)
    row_len = model.config.max_position_embeddings
    data = prepare_sft(job, tok, row_len)
    (tx, ty), (vx, vy) = data["train"], data["val"]
    c = job.config
    cfg = loop.TrainConfig(max_steps=c.steps, batch_size=c.batch_size, lr=c.lr, warmup_steps=max(1, c.steps // 20),
                           weight_decay=0.0, eval_every=max(1, c.steps // 6), log_every=max(1, c.steps // 12),
                           checkpoint_every=max(1, c.steps // 4), seed=c.seed, device=c.device)

    replay_rows = min(math.ceil(c.batch_size * c.pretrain_mix), c.batch_size - 1)  # > 0 rehearses a row, keeps one chat row
    if replay_rows and not job.shards_dir:
        raise ValueError(f"SftConfig.pretrain_mix = {c.pretrain_mix} needs the pretraining shards: set the job's shards_dir "
                         "(the sft_model asset passes tokenized_shards), or set pretrain_mix to 0")
    replay = ShardWindows(Path(job.shards_dir), "train", row_len) if replay_rows else None

    def batches(step, micro, rank):
        rng = np.random.default_rng([c.seed, step, micro, rank])
        idx = rng.integers(0, len(tx), size=c.batch_size - replay_rows)
        x, y = torch.from_numpy(tx[idx]), torch.from_numpy(ty[idx])
        if replay is None:
            return x, y
        px, py = replay.batch(c.seed, step, micro, rank, replay_rows)
        return torch.cat([x, px]), torch.cat([y, py])

    val_batches = [(torch.from_numpy(vx[i:i + c.batch_size]), torch.from_numpy(vy[i:i + c.batch_size]))
                   for i in range(0, len(vx), c.batch_size)]
    device = loop.pick_device(c.device)
    trainee = FusedLlama.from_hf(model).to(device)  # the stock copy stays on CPU for saving
    initial_val = loop.evaluate(trainee, val_batches, device)
    identity = loop.run_identity("sft", job.config, checkpoint_hash(Path(job.base_dir)), file_hash(Path(job.data_path)),
                                 lineage=job.lineage)
    state = loop.train(trainee, cfg, batches, val_batches, Path(job.out_dir + ".state"), identity, log=log, context=row_len)
    trainee.to_hf(model)
    metrics = {"initial_val_loss": initial_val, "final_val_loss": loop.evaluate(trainee, val_batches, device),
               "final_train_loss": state.history[-1]["train_loss"], "steps": state.step, "tokens_seen": state.tokens_seen,
               "train_rows": int(len(tx)), "examples": data["examples"],
               "seconds": time.perf_counter() - t0}
    lineage = dict(job.lineage or {}, stage="sft", base_checkpoint=job.base_dir,
                   base_checkpoint_hash=checkpoint_hash(Path(job.base_dir)), sft_data=job.data_path, config=config_to_dict(job.config),
                   metrics=metrics)
    save_checkpoint(model, Path(job.base_dir), Path(job.out_dir), lineage, {"history.json": state.history})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": state.history, "path": job.out_dir}
