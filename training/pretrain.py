"""Base-model pretraining on the token shards."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipelines.contract import config_to_dict, param, require
from pipelines.tokenize.shards import tokenizer_dir as tokenizer_of
from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.data import ShardWindows, unigram_baseline
from training.fused_llama import FusedLlama
from training.presets import PRESETS, llama_config, preset_dict


@dataclass(frozen=True)
class PretrainConfig:
    """How to pretrain: a size preset and the knobs a user may override (None = the preset's value)."""

    preset: str = param("demo", f"model size and training defaults: {', '.join(PRESETS)}")
    max_steps: int | None = param(None, "optimizer steps; None = the preset's")
    batch_size: int | None = param(None, "sequences per micro-batch; None = the preset's")
    grad_accum: int | None = param(None, "micro-batches per optimizer step; None = the preset's")
    lr: float | None = param(None, "peak learning rate (warmup, then cosine); None = the preset's")
    eval_every: int = param(50, "validation loss every this many steps")
    checkpoint_every: int = param(50, "resume state written every this many steps")
    seed: int = param(0, "seed of the initialization and the batch order")
    compile: bool = param(False, "torch.compile the forward and loss (worth it on a GPU)")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda, cuda:1 ...")

    def __post_init__(self):
        require(self.preset in PRESETS, self, "preset", f"choose one of {sorted(PRESETS)}")
        for name in ("max_steps", "batch_size", "grad_accum", "lr"):
            require(getattr(self, name) is None or getattr(self, name) > 0, self, name, "must be > 0 (or None for the preset's)")
        require(self.eval_every > 0, self, "eval_every", "must be > 0")
        require(self.checkpoint_every > 0, self, "checkpoint_every", "must be > 0")

    def train_config(self) -> loop.TrainConfig:
        p = PRESETS[self.preset]

        def pick(value, preset_value):
            return preset_value if value is None else value

        return loop.TrainConfig(max_steps=pick(self.max_steps, p.max_steps), batch_size=pick(self.batch_size, p.batch_size),
                                grad_accum=pick(self.grad_accum, p.grad_accum), lr=pick(self.lr, p.lr), warmup_steps=p.warmup_steps,
                                eval_every=self.eval_every, checkpoint_every=self.checkpoint_every, seed=self.seed,
                                compile=self.compile, device=self.device, log_every=max(1, min(10, self.eval_every)))


@dataclass
class PretrainJob:
    """One pretraining run: the config plus the files it reads and writes (the CLI's JSON)."""

    shards_dir: str  # holds the tokenizer it was encoded with, which the model gets by construction
    out_dir: str  # the HF checkpoint goes here; resume state beside it in <out_dir>.state
    config: PretrainConfig = field(default_factory=PretrainConfig)
    lineage: dict | None = None


def build_model(preset: str, tokenizer_dir: str, seed: int):
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = llama_config(preset, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg), tok


def run_pretrain(job: PretrainJob, log=print) -> dict:
    loop.configure_threads()
    t0 = time.perf_counter()
    cfg = job.config.train_config()
    context = PRESETS[job.config.preset].context_length
    train_windows = ShardWindows(Path(job.shards_dir), "train", context)  # data problems surface before the model is built
    val_windows = ShardWindows(Path(job.shards_dir), "validation", context)
    tokenizer_dir = tokenizer_of(Path(job.shards_dir))
    model, _ = build_model(job.config.preset, str(tokenizer_dir), job.config.seed)
    trainee = FusedLlama.from_hf(model)
    val_batches = val_windows.fixed_batches(8, cfg.batch_size)
    identity = loop.run_identity("pretrain", job.config, train_windows.fingerprint, lineage=job.lineage)

    def batches(step, micro, rank):
        return train_windows.batch(cfg.seed, step, micro, rank, cfg.batch_size)

    state = loop.train(trainee, cfg, batches, val_batches, Path(job.out_dir + ".state"), identity, log=log, context=context)
    trainee.to_hf(model)
    baseline = unigram_baseline(train_windows.tokens, val_windows.tokens, model.config.vocab_size)
    final_val = loop.evaluate(trainee, val_batches, loop.pick_device(cfg.device))  # on the training device
    params = sum(p.numel() for p in model.parameters())
    tps = [h["tokens_per_s"] for h in state.history if "tokens_per_s" in h]
    mfu = [h["mfu"] for h in state.history if "mfu" in h]
    metrics = {"final_train_loss": state.history[-1]["train_loss"] if state.history else None, "final_val_loss": final_val,
               "unigram_baseline": baseline, "tokens_seen": state.tokens_seen, "steps": state.step, "parameters": params,
               "tokens_per_s": float(np.median(tps)) if tps else None, "mfu": float(np.median(mfu)) if mfu else None,
               "seconds": time.perf_counter() - t0}
    lineage = dict(job.lineage or {}, stage="pretrain", config=config_to_dict(job.config), preset=preset_dict(job.config.preset),
                   train_config=asdict(cfg),
                   shards_fingerprint=train_windows.fingerprint, metrics=metrics)
    save_checkpoint(model, tokenizer_dir, Path(job.out_dir), lineage, {"history.json": state.history})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": state.history, "path": job.out_dir}
