"""Base-model pretraining on the token shards."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.data import ShardWindows, unigram_baseline
from training.fused_llama import FusedLlama
from training.presets import PRESETS, llama_config, preset_dict


@dataclass
class PretrainJob:
    shards_dir: str
    tokenizer_dir: str
    out_dir: str  # the HF checkpoint goes here; resume state beside it in <out_dir>.state
    preset: str = "demo"
    max_steps: int = 0  # 0 = the preset's
    batch_size: int = 0
    grad_accum: int = 0
    lr: float = 0.0
    eval_every: int = 50
    checkpoint_every: int = 50
    seed: int = 0
    compile: bool = False
    device: str = "auto"
    lineage: dict | None = None

    def train_config(self) -> loop.TrainConfig:
        p = PRESETS[self.preset]
        return loop.TrainConfig(max_steps=self.max_steps or p.max_steps, batch_size=self.batch_size or p.batch_size,
                                grad_accum=self.grad_accum or p.grad_accum, lr=self.lr or p.lr, warmup_steps=p.warmup_steps,
                                eval_every=self.eval_every, checkpoint_every=self.checkpoint_every, seed=self.seed,
                                compile=self.compile, device=self.device, log_every=max(1, min(10, self.eval_every)))


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
    cfg = job.train_config()
    context = PRESETS[job.preset].context_length
    model, _ = build_model(job.preset, job.tokenizer_dir, job.seed)
    trainee = FusedLlama.from_hf(model)
    train_windows = ShardWindows(Path(job.shards_dir), "train", context)
    val_windows = ShardWindows(Path(job.shards_dir), "validation", context)
    val_batches = val_windows.fixed_batches(8, cfg.batch_size)
    state_dir = Path(job.out_dir + ".state")
    fingerprint_file = state_dir.parent / (state_dir.name + ".fingerprint")
    if fingerprint_file.exists() and fingerprint_file.read_text() != train_windows.fingerprint:
        raise ValueError(f"resume state in {state_dir} was made from other shards; delete it to start over")
    fingerprint_file.parent.mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(train_windows.fingerprint)

    def batches(step, micro, rank):
        return train_windows.batch(job.seed, step, micro, rank, cfg.batch_size)

    state = loop.train(trainee, cfg, batches, val_batches, state_dir, log=log, context=context)
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
    lineage = dict(job.lineage or {}, stage="pretrain", preset=preset_dict(job.preset), train_config=asdict(cfg),
                   shards_fingerprint=train_windows.fingerprint, metrics=metrics)
    save_checkpoint(model, Path(job.tokenizer_dir), Path(job.out_dir), lineage, {"history.json": state.history})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": state.history, "path": job.out_dir}
