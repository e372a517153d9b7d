"""Bradley-Terry reward model: the SFT transformer with a scalar head, trained on ranked pairs.

P(chosen beats rejected) = sigmoid(r(x, y_w) - r(x, y_l)), so the loss is
-log sigmoid(r_w - r_l) (Ouyang et al. 2022; TRL's RewardTrainer). The reward is read at
the conversation's last token (Llama's sequence-classification head), so it sees the
whole answer and its end of turn. A small penalty on the mean squared reward
(`center_coef`, TRL's `center_rewards_coefficient`) keeps rewards near zero, which the
policy-gradient RL needs (the pairwise loss alone leaves their offset free). Held-out pairs give
the pairwise accuracy, the reward distributions of chosen vs rejected answers and a
calibration table (predicted win probability vs how often the prediction held).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.contract import config_to_dict, param, require
from training import loop
from training.checkpoint import checkpoint_hash, save_checkpoint
from training.dpo import load_pairs, train_on_pairs

HELDOUT_PROMPTS = "heldout_prompts.json"  # saved with the model: RL evaluates on prompts the reward model never saw
CALIBRATION_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # predicted probability of the more likely answer, folded to >= 0.5


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, center_coef: float) -> tuple[torch.Tensor, dict]:
    """Mean -log sigmoid(r_w - r_l) plus `center_coef` x mean(r^2) over both answers."""
    margins = r_chosen - r_rejected
    loss = -F.logsigmoid(margins).mean() + center_coef * torch.cat([r_chosen, r_rejected]).pow(2).mean()
    margins = margins.detach()
    return loss, {"accuracy": float((margins > 0).float().mean()), "margin": float(margins.mean())}


def calibration(margins: np.ndarray) -> list[dict]:
    """Rows of (predicted win probability bin, pairs, predicted, observed): is a 0.8 prediction right 80% of the time?

    Each pair is folded onto the answer the model prefers: predicted = sigmoid(|margin|), observed = whether
    that preferred answer is the chosen one."""
    predicted = 1 / (1 + np.exp(-np.abs(margins)))
    correct = margins > 0
    rows = []
    for lo, hi in zip(CALIBRATION_BINS, CALIBRATION_BINS[1:]):
        inside = (predicted >= lo) & ((predicted < hi) | (hi == 1.0))
        if inside.any():
            rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "pairs": int(inside.sum()), "predicted": round(float(predicted[inside].mean()), 3),
                         "observed": round(float(correct[inside].mean()), 3)})
    return rows


def _batch(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def rewards(model, seqs: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """One scalar per (right-padded) token sequence, read at its last real token."""
    ids, mask = _batch(seqs, pad_id, device)
    return model(input_ids=ids, attention_mask=mask).logits[:, 0]


def pair_margins(model, pairs: list[tuple], pad_id: int, device, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Rewards of the chosen and the rejected answer of every pair (no gradients)."""
    chosen, rejected = [], []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            part = pairs[i:i + batch_size]
            r = rewards(model, [c[0] for c, _ in part] + [r[0] for _, r in part], pad_id, device).float().cpu().numpy()
            chosen.append(r[:len(part)])
            rejected.append(r[len(part):])
    return np.concatenate(chosen), np.concatenate(rejected)


def heldout_figures(model, pairs: list[tuple], pad_id: int, device) -> dict:
    was_training = model.training
    model.eval()
    chosen, rejected = pair_margins(model, pairs, pad_id, device)
    model.train(was_training)
    margins = chosen - rejected
    return {"pairwise_accuracy": float((margins > 0).mean()), "reward_chosen_mean": float(chosen.mean()),
            "reward_chosen_std": float(chosen.std()), "reward_rejected_mean": float(rejected.mean()),
            "reward_rejected_std": float(rejected.std()), "calibration": calibration(margins),
            "loss": float(np.mean(np.logaddexp(0.0, -margins)))}  # -log sigmoid, without overflow


@dataclass(frozen=True)
class RewardConfig:
    """How to train the Bradley-Terry reward model on ranked pairs, starting from the SFT model."""

    steps: int = param(300, "optimizer steps")
    batch_size: int = param(8, "pairs per step")
    lr: float = param(3e-4, "peak learning rate (warmup, then cosine)")
    center_coef: float = param(0.01, "weight of mean(reward^2), which keeps rewards centred on zero")
    val_fraction: float = param(0.2, "share of pairs held out (whole prompts) for pairwise accuracy and calibration")
    seed: int = param(0, "seed of the head's initialisation, the split and the batch order")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda ...")

    def __post_init__(self):
        for name in ("steps", "batch_size", "lr"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.center_coef >= 0, self, "center_coef", "must be >= 0")
        require(0 < self.val_fraction < 1, self, "val_fraction", "must be between 0 and 1 (exclusive)")


@dataclass
class RewardJob:
    """One reward-model run: the config plus the files it reads and writes (the CLI's JSON)."""

    sft_dir: str
    pairs_path: str
    out_dir: str
    config: RewardConfig = field(default_factory=RewardConfig)
    lineage: dict | None = None
    human_pairs_path: str | None = None  # pairs from people's rankings (the human_preferences stage), trained on as well


def run_reward(job: RewardJob, log=print) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    loop.configure_threads()
    t0 = time.perf_counter()
    c = job.config
    loop.make_deterministic(c.seed)  # the scalar head is initialised fresh: seeded
    device = loop.pick_device(c.device)
    tok = AutoTokenizer.from_pretrained(job.sft_dir)
    model = AutoModelForSequenceClassification.from_pretrained(job.sft_dir, num_labels=1, pad_token_id=tok.pad_token_id).to(device)
    paths = [job.pairs_path] + ([job.human_pairs_path] if job.human_pairs_path else [])
    val, train, too_long, held_prompts = load_pairs(tok, paths, model.config.max_position_embeddings, c.val_fraction, c.seed)
    before = heldout_figures(model, val, tok.pad_token_id, device)

    def step_loss(batch):
        r = rewards(model, [ch[0] for ch, _ in batch] + [rj[0] for _, rj in batch], tok.pad_token_id, device)
        return bradley_terry_loss(r[:len(batch)], r[len(batch):], c.center_coef)

    def heldout() -> dict:
        figures = heldout_figures(model, val, tok.pad_token_id, device)
        return {"val_loss": figures["loss"], "val_accuracy": figures["pairwise_accuracy"]}

    history = train_on_pairs(model, c, train, step_loss, heldout, log)
    after = heldout_figures(model, val, tok.pad_token_id, device)
    metrics = {"heldout_pairwise_accuracy_before": before["pairwise_accuracy"], "heldout_pairwise_accuracy": after["pairwise_accuracy"],
               **{f"heldout_{k}": v for k, v in after.items() if k.startswith("reward_")},
               "train_pairs": len(train), "heldout_pairs": len(val),
               "human_pairs": len(Path(job.human_pairs_path).read_text().splitlines()) if job.human_pairs_path else 0,
               "pairs_longer_than_context": too_long,
               "steps": c.steps, "seconds": time.perf_counter() - t0}
    lineage = dict(job.lineage or {}, stage="reward", base_checkpoint=job.sft_dir, base_checkpoint_hash=checkpoint_hash(Path(job.sft_dir)),
                   pairs=job.pairs_path, human_pairs=job.human_pairs_path,
                   config=config_to_dict(c), metrics=metrics)
    save_checkpoint(model, Path(job.sft_dir), Path(job.out_dir), lineage,
                    {"history.json": history, "calibration.json": after["calibration"], HELDOUT_PROMPTS: held_prompts})
    metrics["checkpoint_hash"] = checkpoint_hash(Path(job.out_dir))
    return {"metrics": metrics, "history": history, "path": job.out_dir, "calibration": after["calibration"]}
