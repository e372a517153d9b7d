"""Direct Preference Optimization against a frozen reference (the SFT checkpoint).

loss = -log sigmoid(beta * ((log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))))

Sequence log-probabilities sum over the response tokens only (the assistant mask of
the chat template, end-of-turn token included). Logged: rewards/chosen,
rewards/rejected (beta * policy-minus-reference log-ratios), reward accuracy and
margins, on training batches and on held-out pairs. Sigmoid DPO can lower the
likelihood of the chosen answers too (only the margin matters to it), which on small
models unlearns them; `rpo_alpha` adds the per-token NLL of the chosen answer (RPO,
Pang et al. 2024; TRL's `rpo_alpha`) to keep them likely. 0 gives plain DPO. Pairs come from a JSONL of
(prompt, chosen, rejected), or are built by sampling the SFT model and ranking the
samples with a rule (see `rank_by_rule`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.contract import config_to_dict, param, require
from pipelines.jsonl import read_valid_rows
from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.datasets import pair_problem, split_by_prompt
from training.sft import encode_conversation


def dpo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """Sigmoid DPO loss (mean over pairs) and the usual metrics; inputs are summed response log-probs."""
    chosen_rewards = beta * (pc - rc)
    rejected_rewards = beta * (pr - rr)
    margins = chosen_rewards - rejected_rewards
    loss = -F.logsigmoid(margins).mean()
    chosen_rewards, rejected_rewards, margins = chosen_rewards.detach(), rejected_rewards.detach(), margins.detach()
    return loss, {"rewards/chosen": float(chosen_rewards.mean()), "rewards/rejected": float(rejected_rewards.mean()),
                  "rewards/accuracy": float((margins > 0).float().mean()), "rewards/margins": float(margins.mean())}


def rpo_loss(pc, pr, rc, rr, n_chosen: torch.Tensor, beta: float, alpha: float) -> tuple[torch.Tensor, dict]:
    """DPO plus `alpha` x the mean per-token NLL of the chosen answers (alpha 0 = plain DPO)."""
    loss, metrics = dpo_loss(pc, pr, rc, rr, beta)
    chosen_nll = -(pc / n_chosen.clamp(min=1)).mean()
    metrics["nll/chosen"] = float(chosen_nll.detach())
    return loss + alpha * chosen_nll, metrics


def load_pairs(tok, paths: str | list[str], max_len: int, val_fraction: float, seed: int) -> tuple[list, list, int, list[str]]:
    """Held-out and training pairs of one or more JSONL files, encoded (whole prompts on one side), how many were
    longer than the context, and the held-out prompts."""
    paths, raw = [paths] if isinstance(paths, str) else paths, []
    for path in paths:
        rows, problems = read_valid_rows(Path(path), pair_problem)
        if problems:
            raise ValueError(f"{path}: preference pairs have invalid rows (build them with the preference_dataset stage): "
                             + "; ".join(problems[:5]))
        raw += rows
    encoded = [(r["prompt"], e) for r in raw if (e := encode_pair(tok, r, max_len))]
    if len(encoded) < 2:
        raise ValueError(f"{', '.join(paths)}: {len(encoded)} of {len(raw)} pairs fit the model's {max_len}-token context; "
                         "at least 2 are needed")
    held_prompts = sorted(set(split_by_prompt([(p, p) for p, _ in encoded], val_fraction, seed)[0]))
    return *split_by_prompt(encoded, val_fraction, seed), len(raw) - len(encoded), held_prompts


def train_on_pairs(model, c, train: list, step_loss: Callable, heldout: Callable[[], dict], log) -> list[dict]:
    """A fixed-step run over pairs (`c` has steps, batch_size, lr, seed, device): warmup + cosine AdamW, batches
    drawn by (seed, step), clipping; `step_loss(batch)` gives (loss, metrics), `heldout()` the validation fields
    added (and logged) six times per run. Returns the per-step history."""
    cfg = loop.TrainConfig(max_steps=c.steps, batch_size=c.batch_size, lr=c.lr, warmup_steps=max(1, c.steps // 10),
                           weight_decay=0.0, seed=c.seed, device=c.device)
    optimizer = torch.optim.AdamW(loop.param_groups(model, 0.0), lr=c.lr, betas=cfg.betas)
    history = []
    model.train()
    for step in range(c.steps):
        for g in optimizer.param_groups:
            g["lr"] = loop.lr_at(step, cfg)
        idx = np.random.default_rng([c.seed, step]).integers(0, len(train), size=c.batch_size)
        loss, m = step_loss([train[i] for i in idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"step": step + 1, "train_loss": loss.item(), **m}
        if (step + 1) % max(1, c.steps // 6) == 0 or step + 1 == c.steps:
            record.update(heldout())
            log(record)
        history.append(record)
    return history


def encode_pair(tok, pair: dict, max_len: int):
    chosen = encode_conversation(tok, [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["chosen"]}],
                                 max_len)
    rejected = encode_conversation(tok, [{"role": "user", "content": pair["prompt"]}, {"role": "assistant",
                                                                                       "content": pair["rejected"]}], max_len)
    return (chosen, rejected) if chosen and rejected else None


def _pad(seqs: list[tuple[list[int], list[int]]], pad_id: int):
    n = max(len(ids) for ids, _ in seqs)
    x = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    y = torch.full((len(seqs), n), -100, dtype=torch.long)
    att = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, (ids, labels) in enumerate(seqs):
        x[i, :len(ids)], y[i, :len(labels)], att[i, :len(ids)] = torch.tensor(ids), torch.tensor(labels), 1
    return x, y, att


def sequence_logps(model, x, y, att) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p(token) over labelled (response) positions, and their count, per sequence."""
    logits = model(input_ids=x, attention_mask=att).logits[:, :-1].float()
    labels = y[:, 1:]
    mask = labels != -100
    logp = torch.gather(F.log_softmax(logits, dim=-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1), mask.sum(-1)


def pair_logps(model, batch, pad_id, device):
    """Summed response log-probs of the chosen and the rejected answers, and the chosen token counts."""
    chosen, rejected = [c for c, _ in batch], [r for _, r in batch]
    x, y, att = (t.to(device) for t in _pad(chosen + rejected, pad_id))
    logps, counts = sequence_logps(model, x, y, att)
    return logps[:len(batch)], logps[len(batch):], counts[:len(batch)]


@torch.no_grad()
def evaluate_pairs(policy, reference, pairs, pad_id, device, beta, batch_size=16) -> dict:
    policy.eval()
    metrics = []
    for i in range(0, len(pairs), batch_size):
        batch = pairs[i:i + batch_size]
        pc, pr, _ = pair_logps(policy, batch, pad_id, device)
        rc, rr, _ = pair_logps(reference, batch, pad_id, device)
        _, m = dpo_loss(pc, pr, rc, rr, beta)
        metrics.append((len(batch), m))
    policy.train()
    total = sum(n for n, _ in metrics) or 1
    return {k: sum(n * m[k] for n, m in metrics) / total for k in metrics[0][1]} if metrics else {}


def rank_by_rule(prompt: str, responses: list[str]) -> tuple[str, str]:
    """(chosen, rejected) among sampled responses: prefer answers that mention the subject of the
    question, end cleanly, and are neither empty nor rambling; ties go to the shorter answer."""
    subject = set(w.strip("?.,!").lower() for w in prompt.split() if w[:1].isupper())

    def score(r: str) -> tuple:
        words = r.split()
        return (len(subject & {w.strip("?.,!").lower() for w in words}), r.rstrip().endswith((".", "!", "?")),
                3 <= len(words) <= 40, -len(words))

    ranked = sorted(responses, key=score, reverse=True)
    return ranked[0], ranked[-1]


def sample_pairs(model_dir: str, prompts: list[str], k: int = 4, max_new_tokens: int = 40, seed: int = 0) -> list[dict]:
    """Preference pairs from the SFT model: k samples per prompt, ranked by `rank_by_rule`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    torch.manual_seed(seed)
    pairs = []
    for prompt in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, do_sample=True, temperature=1.0, top_p=0.95, num_return_sequences=k,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        responses = [tok.decode(o[ids["input_ids"].shape[1]:], skip_special_tokens=True).strip() for o in out]
        chosen, rejected = rank_by_rule(prompt, responses)
        if chosen != rejected:
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "origin": "sampled"})
    return pairs


@dataclass(frozen=True)
class DpoConfig:
    """How to align with DPO (+ the chosen answers' NLL) against the frozen SFT model."""

    beta: float = param(0.1, "strength of the implicit KL penalty to the reference")
    rpo_alpha: float = param(1.0, "weight of the per-token NLL of chosen answers (RPO); 0 = plain DPO")
    steps: int = param(40, "optimizer steps (the demo's ~230 training pairs: about 1.4 passes)")
    batch_size: int = param(8, "pairs per step")
    lr: float = param(2e-4, "peak learning rate (warmup, then cosine)")
    val_fraction: float = param(0.15, "share of pairs held out (whole prompts) for reward accuracy")
    seed: int = param(0, "seed of the split and the batch order")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda ...")

    def __post_init__(self):
        for name in ("beta", "steps", "batch_size", "lr"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.rpo_alpha >= 0, self, "rpo_alpha", "must be >= 0 (0 = plain DPO)")
        require(0 < self.val_fraction < 1, self, "val_fraction", "must be between 0 and 1 (exclusive)")


@dataclass
class DpoJob:
    """One DPO run: the config plus the files it reads and writes (the CLI's JSON). The pairs are
    expected decontaminated already (the `preference_dataset` stage does it)."""

    sft_dir: str
    pairs_path: str
    out_dir: str
    config: DpoConfig = field(default_factory=DpoConfig)
    lineage: dict | None = None


def run_dpo(job: DpoJob, log=print) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loop.configure_threads()
    t0 = time.perf_counter()
    c = job.config
    loop.make_deterministic(c.seed)
    device = loop.pick_device(c.device)
    tok = AutoTokenizer.from_pretrained(job.sft_dir)
    policy = AutoModelForCausalLM.from_pretrained(job.sft_dir).to(device)
    reference = AutoModelForCausalLM.from_pretrained(job.sft_dir).to(device).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    val, train, _, _ = load_pairs(tok, job.pairs_path, policy.config.max_position_embeddings, c.val_fraction, c.seed)
    before = evaluate_pairs(policy, reference, val, tok.pad_token_id, device, c.beta)

    def step_loss(batch):
        pc, pr, n_chosen = pair_logps(policy, batch, tok.pad_token_id, device)
        with torch.no_grad():
            rc, rr, _ = pair_logps(reference, batch, tok.pad_token_id, device)
        return rpo_loss(pc, pr, rc, rr, n_chosen, c.beta, c.rpo_alpha)

    history = train_on_pairs(policy, c, train, step_loss, log=log, heldout=lambda: {
        f"val_{k}": v for k, v in evaluate_pairs(policy, reference, val, tok.pad_token_id, device, c.beta).items()})
    after = evaluate_pairs(policy, reference, val, tok.pad_token_id, device, c.beta)
    metrics = {"heldout_reward_accuracy_before": before.get("rewards/accuracy"), "heldout_reward_accuracy": after.get("rewards/accuracy"),
               "heldout_margin": after.get("rewards/margins"), "train_pairs": len(train), "heldout_pairs": len(val),
               "beta": c.beta, "rpo_alpha": c.rpo_alpha, "steps": c.steps, "seconds": time.perf_counter() - t0}
    lineage = dict(job.lineage or {}, stage="dpo", reference_checkpoint=job.sft_dir,
                   reference_checkpoint_hash=checkpoint_hash(Path(job.sft_dir)), pairs=job.pairs_path, config=config_to_dict(c),
                   metrics=metrics)
    save_checkpoint(policy, Path(job.sft_dir), Path(job.out_dir), lineage, {"history.json": history})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": history, "path": job.out_dir}
