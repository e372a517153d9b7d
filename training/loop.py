"""The training loop shared by pretraining and SFT: next-token loss on labelled tokens.

AdamW (0.9, 0.95) with weight decay on >= 2-D weights only (no decay on embeddings,
norms, biases), linear warmup then cosine decay to `min_lr_ratio`, gradient clipping,
gradient accumulation normalized by the number of labelled tokens in the whole step
(not per micro-batch), bf16 autocast on CUDA, SDPA attention, optional torch.compile,
DDP when launched under torchrun. Batches are a pure function of (seed, step, micro,
rank), so a resumed run sees exactly the batches an uninterrupted one would. The host
waits for the GPU only at log, eval and checkpoint steps (losses and grad norms stay on
the device until then), so kernel launches run ahead of the GPU.

Resume state (model, optimizer, step, RNG, history) is written with safetensors + JSON
into a temp directory and renamed: nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import xxhash
from safetensors.torch import load_file, load_model, save_file, save_model

from pipelines.lake import atomic_directory

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


@dataclass
class TrainConfig:
    max_steps: int
    batch_size: int
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 8
    log_every: int = 10
    checkpoint_every: int = 50
    seed: int = 0
    compile: bool = False
    device: str = "auto"


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    history: list[dict] = field(default_factory=list)  # {"step", "train_loss", "val_loss"?, "lr", "tokens_per_s"}


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; embeddings, norms and biases are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.dim() < 2 or "embed" in name or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def token_loss_sum(model, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """Sum (not mean) of next-token cross-entropy over labelled positions (labels != -100)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    # shift the labels, not the logits: slicing B x T x V logits would copy them
    shifted = F.pad(labels[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), shifted.reshape(-1), ignore_index=-100, reduction="sum")


def flops_per_token(model: torch.nn.Module, context: int) -> float:
    """PaLM's estimate: 6N + 12 * layers * heads * head_dim * context."""
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    return 6 * n + 12 * c.num_hidden_layers * c.num_attention_heads * (c.hidden_size // c.num_attention_heads) * context


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


# ---- resume state ------------------------------------------------------------------
def run_identity(stage: str, config, *inputs, lineage: dict | None = None) -> str:
    """What a resume state belongs to: stage, config, input data versions and code version.

    A state is resumed only by the same identity (a retry of the same run); any change of
    config, data, parent checkpoint or code starts training fresh.
    """
    code = (lineage or {}).get("code_version")
    payload = json.dumps({"stage": stage, "config": asdict(config), "inputs": inputs, "code": code},
                         sort_keys=True, default=str)
    return xxhash.xxh3_128_hexdigest(payload.encode())


def save_state(state_dir: Path, model, optimizer, state: TrainState, identity: str) -> None:
    raw = model.module if hasattr(model, "module") else model
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, s in opt["state"].items():
        for key, value in s.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]]
    meta = {"identity": identity, "state": asdict(state), "param_groups": groups,
            "scalars": scalars}
    with atomic_directory(Path(state_dir)) as tmp:
        save_model(raw, str(tmp / "model.safetensors"))  # handles tied embeddings
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))


def load_state(state_dir: Path, model, optimizer, identity: str) -> TrainState | None:
    """The saved state of this same run, or None (nothing saved, or saved by another run)."""
    state_dir = Path(state_dir)
    if not (state_dir / "state.json").exists():
        return None
    meta = json.loads((state_dir / "state.json").read_text())
    if meta.get("identity") != identity:
        return None
    raw = model.module if hasattr(model, "module") else model
    load_model(raw, str(state_dir / "model.safetensors"), strict=True, device=str(next(raw.parameters()).device))
    tensors = load_file(str(state_dir / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.cpu"))
    cuda_states = [tensors.pop(k) for k in sorted(k for k in tensors if k.startswith("rng.cuda"))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    opt_state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    sd = optimizer.state_dict()
    groups = [dict(g, params=sd["param_groups"][i]["params"]) for i, g in enumerate(meta["param_groups"])]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    st = meta["state"]
    return TrainState(step=st["step"], tokens_seen=st["tokens_seen"], history=st["history"])


# ---- the loop ----------------------------------------------------------------------
Batch = tuple[torch.Tensor, torch.Tensor]  # input_ids, labels (-100 = no loss)


def train(model, cfg: TrainConfig, batches: Callable[[int, int, int], Batch], val_batches: list[Batch], state_dir: Path,
          identity: str, log: Callable[[dict], None] = lambda m: None, context: int = 0) -> TrainState:
    """Train until cfg.max_steps, resuming from `state_dir` if it holds a state of this run (`identity`)."""
    make_deterministic(cfg.seed)
    device = pick_device(cfg.device)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                  fused=device.type == "cuda")
    state = load_state(state_dir, model, optimizer, identity)
    if state is None:
        if (Path(state_dir) / "state.json").exists():
            log({"event": "fresh_start", "reason": "the resume state belongs to another config, data or code version"})
        state = TrainState()
    elif state.step:
        log({"event": "resumed", "step": state.step})
    core = model
    if distributed:
        core = torch.nn.parallel.DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None)

    def step_loss(x, y):
        return token_loss_sum(core, x, y)

    if cfg.compile:  # compile forward *and* loss, so the B x T x V logits never leave the fused graph
        step_loss = torch.compile(step_loss)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    fpt, peak = flops_per_token(model, context or 1), peak_flops(device)
    t_last, tokens_last = time.perf_counter(), 0
    model.train()
    pending: list[tuple[dict, torch.Tensor, torch.Tensor]] = []  # records whose loss/grad norm are still on the device

    def settle() -> None:
        """One host sync for all pending steps (not one per step, which would stall the GPU)."""
        if pending:
            values = torch.stack([torch.stack([loss, norm]) for _, loss, norm in pending]).tolist()
            for (record, _, _), (loss, norm) in zip(pending, values):
                record["train_loss"], record["grad_norm"] = loss, norm
            pending.clear()

    while state.step < cfg.max_steps:
        step = state.step
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, cfg)
        micro = [to_device(batches(step, m, rank), device) for m in range(cfg.grad_accum)]
        n_tokens = sum(n for _, _, n in micro)
        world = torch.distributed.get_world_size() if distributed else 1
        if distributed:
            total = torch.tensor(float(n_tokens), device=device)
            torch.distributed.all_reduce(total)
            n_tokens = int(total.item())
        loss_sum = torch.zeros((), device=device)
        for m, (x, y, _) in enumerate(micro):
            sync = not distributed or m == cfg.grad_accum - 1
            ctx = core.no_sync() if distributed and not sync else nullcontext()
            with ctx, autocast:
                local = step_loss(x, y)
                # DDP averages gradients over ranks; scaling by world makes the step's gradient
                # exactly d(sum of token losses over all ranks and micro-batches)/d(theta) / n_tokens
                (local * (world / max(n_tokens, 1))).backward()
            loss_sum += local.detach()
        if distributed:
            torch.distributed.all_reduce(loss_sum)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_seen += n_tokens
        tokens_last += sum(x.numel() for x, _, _ in micro)
        record = {"step": state.step, "train_loss": None, "lr": lr_at(step, cfg), "grad_norm": None}
        pending.append((record, loss_sum / max(n_tokens, 1), grad_norm.detach()))
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            settle()
            now = time.perf_counter()
            tps = tokens_last * world / max(now - t_last, 1e-9)
            record["tokens_per_s"] = tps
            if peak:
                record["mfu"] = tps * fpt / peak
            t_last, tokens_last = now, 0
        if val_batches and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
            settle()
            record["val_loss"] = evaluate(model, val_batches, device, autocast)
        state.history.append(record)
        if "tokens_per_s" in record or "val_loss" in record:
            log(record)
        if rank == 0 and (state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps):
            settle()
            save_state(state_dir, model, optimizer, state, identity)
    settle()
    return state


def to_device(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Move a batch without stalling the stream (pinned, non-blocking); also count its labelled tokens."""
    x, y = batch
    n = int((y[:, 1:] != -100).sum())
    if device.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True), n


@torch.no_grad()
def evaluate(model, val_batches: list[Batch], device, autocast=None) -> float:
    """Mean next-token loss per labelled token over fixed validation batches."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in val_batches:
        x, y = x.to(device), y.to(device)
        with autocast or nullcontext():
            total += float(token_loss_sum(model, x, y))
        count += int((y[:, 1:] != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def make_deterministic(seed: int) -> None:
    """Same data, config and seed -> the same weights, bit for bit. Without deterministic kernels two
    CPU runs of the demo drifted apart within 30 steps (threaded reductions) and ended as different
    models. On CUDA, ops with no deterministic kernel warn instead of failing."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before its first call
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)


def configure_threads() -> None:
    """Use the cores this process may use (CI gives 2), unless OMP_NUM_THREADS says otherwise."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
