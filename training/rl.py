"""RLHF: optimise the policy against the reward model with RLOO, keeping it close to where it started.

Each step samples k answers per prompt from the policy (plain sampling at temperature 1, so the
sampled tokens' log-probabilities are the policy's own), scores them with the reward model, and
subtracts the KL penalty `kl_coef` x sum_t(log pi - log pi_ref) from each score (KL in the reward,
as Ziegler et al. 2019 and RLOO do). The baseline of an answer is the mean total reward of the other
k-1 answers to the same prompt (REINFORCE leave-one-out, Ahmadian et al. 2024; TRL's RLOOTrainer),
so there is no critic. The policy loss is PPO's clipped surrogate over `ppo_epochs` passes on the
same samples; the first pass is exactly on-policy, later ones show in the clip fraction. Token
losses are summed and divided by a constant (prompts x k x max_new_tokens, Dr. GRPO), so longer
answers are not favoured or punished by the normalisation itself.

Guards against reward hacking: the KL penalty; a KL bound (a step whose mean KL passes it raises
the penalty coefficient by half, one under half the bound lowers it back toward the configured
value; the final held-out KL is checked against the bound); a penalty for answers that never end
their turn (TRL's `missing_eos_penalty`); and held-out prompts that neither the reward model nor
the policy trained on, where the metadata shows reward, KL, answer length, the correlation of
reward with length and the share of unfinished answers, before and after.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.contract import config_to_dict, param, require
from pipelines.jsonl import read_valid_rows
from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.datasets import pair_problem, split_by_prompt
from training.reward import HELDOUT_PROMPTS, rewards

KL_RAISE = 1.5  # factor on kl_coef when a step's mean KL passes the bound


def rloo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages of a (prompts, k) score matrix: each score minus the mean of the other k-1."""
    k = scores.shape[1]
    return (scores - (scores.sum(1, keepdim=True) - scores) / (k - 1)) if k > 1 else torch.zeros_like(scores)


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip_eps: float, normaliser: float) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate, -min(ratio A, clip(ratio, 1 +- eps) A), summed over response tokens / `normaliser`.

    `logp`, `old_logp` and `mask` are (sequences, tokens); `advantages` one value per sequence."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    unclipped, clipped = ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv
    loss = -(torch.minimum(unclipped, clipped) * mask).sum() / normaliser
    clip_active = (clipped < unclipped).float() * mask  # the clipped branch is the one taken
    return loss, {"clip_fraction": float(clip_active.sum() / mask.sum().clamp(min=1))}


@dataclass
class Samples:
    """Sampled answers: token sequences (prompt + answer), where each answer starts, whether it ended its turn."""

    seqs: list[list[int]]
    starts: list[int]
    finished: list[bool]

    def lengths(self) -> np.ndarray:
        return np.array([len(s) - st for s, st in zip(self.seqs, self.starts)])


@torch.no_grad()
def sample(model, tok, prompts: list[str], k: int, max_new_tokens: int, seed: int) -> Samples:
    """k answers per prompt (plain sampling: temperature 1, no top-k/top-p), seeded; all prompts in one left-padded batch."""
    stops = {tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")}
    encoded = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_dict=True)["input_ids"]
               for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded], device=model.device)
    attention = (torch.arange(width, device=model.device)[None, :] >= width - torch.tensor([len(e) for e in encoded],
                                                                                             device=model.device)[:, None]).long()
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    gen = model.generate(input_ids=ids, attention_mask=attention, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                         num_return_sequences=k, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    model.train(was_training)
    out = Samples([], [], [])
    for row, prompt_ids in zip(gen[:, width:].tolist(), (e for e in encoded for _ in range(k))):  # rows: prompt 0 k times, ...
        end = next((i + 1 for i, t in enumerate(row) if t in stops), None)
        out.seqs.append(prompt_ids + (row[:end] if end else row))
        out.starts.append(len(prompt_ids))
        out.finished.append(end is not None)
    return out


def token_logprobs(model, s: Samples, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the sampled answer tokens, the answer mask, and the full log-softmax (sequences, tokens[, vocab])."""
    width = max(len(x) for x in s.seqs)
    ids = torch.full((len(s.seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    mask = torch.zeros((len(s.seqs), width - 1))
    for i, (seq, start) in enumerate(zip(s.seqs, s.starts)):
        ids[i, :len(seq)], att[i, :len(seq)] = torch.tensor(seq), 1
        mask[i, start - 1:len(seq) - 1] = 1  # the logits row before each answer token predicts it
    ids, att, mask = ids.to(device), att.to(device), mask.to(device)
    logprobs = F.log_softmax(model(input_ids=ids, attention_mask=att).logits[:, :-1].float(), dim=-1)
    return torch.gather(logprobs, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1), mask, logprobs


@dataclass(frozen=True)
class RlConfig:
    """How to optimise the policy against the reward model (RLOO, KL penalty to the starting model)."""

    start_from: Literal["sft_model", "dpo_model"] = param("sft_model", "the policy's starting point and KL reference: "
                                                                       "sft_model (RLHF) or dpo_model (DPO, then RLHF)")
    steps: int = param(60, "policy updates")
    prompts_per_step: int = param(8, "prompts sampled per step")
    samples_per_prompt: int = param(4, "answers per prompt (k); each one's baseline is the mean of the other k-1")
    max_new_tokens: int = param(40, "longest sampled answer")
    lr: float = param(8e-5, "peak learning rate (warmup, then cosine)")
    kl_coef: float = param(0.05, "KL penalty per nat of sum_t(log pi - log pi_ref), subtracted from the reward")
    kl_bound: float = param(2.0, "largest allowed mean KL (nats per answer) to the starting model; a step over it raises "
                                 "kl_coef by half, and the held-out KL is checked against it")
    clip_eps: float = param(0.2, "PPO ratio clip")
    ppo_epochs: int = param(2, "passes over each step's samples")
    missing_eos_penalty: float = param(1.0, "subtracted from the reward of an answer that never ends its turn")
    val_fraction: float = param(0.2, "share of prompts held out when the reward model did not record its own held-out prompts")
    heldout_samples: int = param(16, "answers per held-out prompt for the before/after figures (rewards vary widely "
                                     "between samples: with 4 the demo's before-figure moved by 0.4 between seeds)")
    seed: int = param(0, "seed of prompt order and sampling")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda ...")

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "max_new_tokens", "lr", "kl_bound", "ppo_epochs", "heldout_samples"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.samples_per_prompt >= 2, self, "samples_per_prompt", "must be >= 2 (the leave-one-out baseline needs another answer)")
        require(self.kl_coef >= 0, self, "kl_coef", "must be >= 0")
        require(0 < self.clip_eps < 1, self, "clip_eps", "must be between 0 and 1")
        require(self.missing_eos_penalty >= 0, self, "missing_eos_penalty", "must be >= 0")
        require(0 < self.val_fraction < 1, self, "val_fraction", "must be between 0 and 1 (exclusive)")


@dataclass
class RlJob:
    """One RL run: the config plus the files it reads and writes (the CLI's JSON)."""

    start_dir: str  # the policy's start and KL reference (the SFT or the DPO checkpoint)
    reward_dir: str
    pairs_path: str  # prompts come from the ranked pairs the reward model learned from
    out_dir: str
    config: RlConfig = field(default_factory=RlConfig)
    lineage: dict | None = None


def split_prompts(job: RlJob) -> tuple[list[str], list[str]]:
    """(held-out, training) prompts: held out are the reward model's own held-out prompts, so neither model trained on them."""
    rows, problems = read_valid_rows(Path(job.pairs_path), pair_problem)
    if problems:
        raise ValueError(f"{job.pairs_path}: invalid preference rows: " + "; ".join(problems[:5]))
    prompts = sorted({r["prompt"] for r in rows})
    recorded = Path(job.reward_dir, HELDOUT_PROMPTS)
    if recorded.exists():
        held = set(json.loads(recorded.read_text()))
    else:
        held = set(split_by_prompt([(p, p) for p in prompts], job.config.val_fraction, job.config.seed)[0])
    train = [p for p in prompts if p not in held]
    if not train or not held:
        raise ValueError(f"{job.pairs_path}: {len(prompts)} prompts leave {len(train)} to train on and {len(held)} held out; "
                         "RL needs both")
    return sorted(held), train


class Rloo:
    """The policy, its frozen reference and the reward model, and one RLOO step on them."""

    def __init__(self, job: RlJob, device):
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        self.c, self.device = job.config, device
        self.tok = AutoTokenizer.from_pretrained(job.start_dir)
        self.policy = AutoModelForCausalLM.from_pretrained(job.start_dir).to(device)
        self.reference = AutoModelForCausalLM.from_pretrained(job.start_dir).to(device).eval().requires_grad_(False)
        self.reward_model = AutoModelForSequenceClassification.from_pretrained(job.reward_dir).to(device).eval().requires_grad_(False)
        self.kl_coef = self.c.kl_coef
        self.pad = self.tok.pad_token_id

    def step(self, prompts: list[str], seed: int, optimizer) -> dict:
        c, k = self.c, self.c.samples_per_prompt
        s = sample(self.policy, self.tok, prompts, k, c.max_new_tokens, seed)
        unfinished = 1.0 - torch.tensor(s.finished, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            old_logp, mask, _ = token_logprobs(self.policy, s, self.pad, self.device)
            kl = ((old_logp - token_logprobs(self.reference, s, self.pad, self.device)[0]) * mask).sum(1)  # sampled estimate
            score = rewards(self.reward_model, s.seqs, self.pad, self.device).float()
        total = score - c.missing_eos_penalty * unfinished - self.kl_coef * kl
        advantages = rloo_advantages(total.view(len(prompts), k)).view(-1)
        normaliser = len(s.seqs) * c.max_new_tokens
        self.policy.train()
        record = {}
        for epoch in range(c.ppo_epochs):
            logp, _, logprobs = token_logprobs(self.policy, s, self.pad, self.device)
            loss, m = clipped_policy_loss(logp, old_logp, advantages, mask, c.clip_eps, normaliser)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if epoch == 0:
                entropy = -(logprobs.exp() * logprobs).sum(-1).detach()
                record = {"policy_loss": loss.item(), "entropy": float((entropy * mask).sum() / mask.sum())}
            record["clip_fraction"] = m["clip_fraction"]  # of the last pass: the first is on-policy (no clipping)
        mean_kl = float(kl.mean())
        record.update({"reward": float(score.mean()), "kl": mean_kl, "total_reward": float(total.mean()), "kl_coef": self.kl_coef,
                       "response_length": float(s.lengths().mean()), "unfinished": float(unfinished.mean())})
        if mean_kl > c.kl_bound:
            self.kl_coef = max(self.kl_coef, 1e-3) * KL_RAISE
        elif mean_kl < c.kl_bound / 2:  # back toward the configured penalty once KL is well inside the bound
            self.kl_coef = max(c.kl_coef, self.kl_coef / KL_RAISE)
        return record

    @torch.no_grad()
    def heldout(self, prompts: list[str]) -> dict:
        """Mean reward, exact KL to the reference (summed over answer tokens), length, unfinished share and the
        reward-length correlation of `heldout_samples` seeded answers per held-out prompt."""
        c = self.c
        s = sample(self.policy, self.tok, prompts, c.heldout_samples, c.max_new_tokens, c.seed + 7919)
        _, mask, logprobs = token_logprobs(self.policy, s, self.pad, self.device)
        _, _, ref_logprobs = token_logprobs(self.reference, s, self.pad, self.device)
        kl = ((logprobs.exp() * (logprobs - ref_logprobs)).sum(-1) * mask).sum(1)
        score = rewards(self.reward_model, s.seqs, self.pad, self.device).float().cpu().numpy()
        lengths = s.lengths()
        corr = float(np.corrcoef(score, lengths)[0, 1]) if score.std() > 0 and lengths.std() > 0 else 0.0
        return {"reward": float(score.mean()), "kl": float(kl.mean()), "response_length": float(lengths.mean()),
                "unfinished": float(1 - np.mean(s.finished)), "reward_length_correlation": corr}


def run_rl(job: RlJob, log=print) -> dict:
    loop.configure_threads()
    t0 = time.perf_counter()
    c = job.config
    loop.make_deterministic(c.seed)
    rl = Rloo(job, loop.pick_device(c.device))
    held, train = split_prompts(job)
    before = rl.heldout(held)
    log({"event": "heldout_before", **before})
    cfg = loop.TrainConfig(max_steps=c.steps, batch_size=c.prompts_per_step, lr=c.lr, warmup_steps=max(1, c.steps // 10),
                           weight_decay=0.0, seed=c.seed, device=c.device)
    optimizer = torch.optim.AdamW(loop.param_groups(rl.policy, 0.0), lr=c.lr, betas=cfg.betas)
    history = []
    for step in range(c.steps):
        for g in optimizer.param_groups:
            g["lr"] = loop.lr_at(step, cfg)
        idx = np.random.default_rng([c.seed, step]).choice(len(train), size=min(c.prompts_per_step, len(train)), replace=False)
        record = {"step": step + 1, **rl.step([train[i] for i in idx], c.seed * 1_000_003 + step, optimizer)}
        if (step + 1) % max(1, c.steps // 4) == 0 or step + 1 == c.steps:  # held-out sampling costs a few steps' time
            record.update({f"val_{k}": v for k, v in rl.heldout(held).items()})
        log(record)  # every step: reward, KL, entropy, length, clip fraction stream into the run's logs
        history.append(record)
    after = {k[4:]: v for k, v in history[-1].items() if k.startswith("val_")}
    metrics = {"heldout_reward_before": before["reward"], "heldout_reward": after["reward"], "heldout_kl": after["kl"],
               "kl_bound": c.kl_bound, "kl_within_bound": int(after["kl"] <= c.kl_bound), "final_kl_coef": rl.kl_coef,
               "heldout_length_before": before["response_length"], "heldout_length": after["response_length"],
               "heldout_unfinished_before": before["unfinished"], "heldout_unfinished": after["unfinished"],
               "heldout_reward_length_correlation": after["reward_length_correlation"],
               "train_prompts": len(train), "heldout_prompts": len(held), "steps": c.steps, "seconds": time.perf_counter() - t0}
    lineage = dict(job.lineage or {}, stage="rl", reference_checkpoint=job.start_dir,
                   reference_checkpoint_hash=checkpoint_hash(Path(job.start_dir)), reward_checkpoint=job.reward_dir,
                   reward_checkpoint_hash=checkpoint_hash(Path(job.reward_dir)), pairs=job.pairs_path, config=config_to_dict(c),
                   metrics=metrics)
    save_checkpoint(rl.policy, Path(job.start_dir), Path(job.out_dir), lineage, {"history.json": history})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": history, "path": job.out_dir}
