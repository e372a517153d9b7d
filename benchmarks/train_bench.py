"""Training throughput: our loop vs a minimal plain-PyTorch loop, same model, same batches.

The plain loop is what a tutorial writes: forward, mean cross-entropy, backward, clip,
AdamW step, `loss.item()`. Ours adds token-normalized accumulation, the LR schedule,
no-decay groups, logging and (at the end) a resume checkpoint; the checkpoint is outside
the timed steps. On CUDA both use bf16 autocast (and torch.compile with --compile), and ours
reports MFU with the PaLM formula. Warm-up steps are excluded from both; the two loops
run in alternating rounds and the median ratio is reported (a shared 2-core machine
swings by 10-15% from one run to the next).

    python -m benchmarks.train_bench [--preset demo] [--steps 30] [--warmup 10] [--rounds 3] [--compile] [--stock] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from training import loop
from training.fused_llama import FusedLlama
from training.presets import PRESETS, llama_config

LOG_EVERY = 10  # as pretraining: the loop waits for the GPU only when it logs


def make_model(preset: str, vocab: int, device: torch.device, stock: bool = False):
    """The model our pretraining trains (FusedLlama) or, with `stock`, transformers' LlamaForCausalLM."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = llama_config(preset, vocab, 0, 0, 1)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).to(device)
    return model if stock else FusedLlama.from_hf(model)


def plain_loop(model, batches, steps: int, warmup: int, accum: int, device, compile_: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=device.type == "cuda")

    def mean_loss(x):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), F.pad(x[:, 1:], (0, 1), value=-100).flatten(), ignore_index=-100)

    core = torch.compile(mean_loss) if compile_ else mean_loss
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    tokens, start = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, tokens = time.perf_counter(), 0
        for m in range(accum):
            x = batches[(step * accum + m) % len(batches)].to(device, non_blocking=True)
            with autocast:
                loss = core(x) / accum
            loss.backward()
            tokens += x.numel()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the same per-step host sync our loop does when it records the loss
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def run_ours(model, batches, accum: int, device, compile_: bool, max_steps: int, state_dir: Path, context: int = 0):
    """Our loop over the benchmark batches, logging (and so syncing) every 10 steps as pretraining does."""
    cfg = loop.TrainConfig(max_steps=max_steps, batch_size=batches[0].shape[0], grad_accum=accum, lr=1e-4, warmup_steps=1,
                           log_every=LOG_EVERY, eval_every=10 ** 9, checkpoint_every=10 ** 9, compile=compile_, device=str(device))

    def source(step, micro, rank):
        x = batches[(step * accum + micro) % len(batches)]
        return x, x

    return loop.train(model, cfg, source, [], state_dir, identity="train_bench", context=context)


def our_loop(model, batches, steps: int, warmup: int, accum: int, device, compile_: bool, context: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        state = run_ours(model, batches, accum, device, compile_, warmup + steps, Path(tmp) / "state", context)
    timed = [h for h in state.history if "tokens_per_s" in h and h["step"] - LOG_EVERY >= warmup]
    out = {"tokens_per_s": statistics.median(h["tokens_per_s"] for h in timed)}
    if "mfu" in timed[0]:
        out["mfu"] = statistics.median(h["mfu"] for h in timed)
    return out


def write_profile(model, batches, accum: int, device, compile_: bool, path: Path) -> None:
    """Where the step time goes: our loop under torch.profiler, kernels sorted by device time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(loop, "save_state"):  # no resume checkpoints in the profile
        run_ours(model, batches, accum, device, compile_, 5, Path(tmp) / "warm")  # compile and warm up
        with profile(activities=activities) as prof:
            run_ours(model, batches, accum, device, compile_, 3, Path(tmp) / "profiled")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="plain/ours pairs to run; ratios are the median")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--stock", action="store_true", help="train transformers' LlamaForCausalLM modules, not FusedLlama")
    parser.add_argument("--profile", type=Path, help="also write a per-kernel time table of 3 steps of our loop here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train.json"))
    args = parser.parse_args()
    loop.configure_threads()
    device = loop.pick_device()
    p = PRESETS[args.preset]
    bs = args.batch_size or p.batch_size
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (bs, p.context_length), generator=g) for _ in range(8)]
    plains, rounds = [], []
    for _ in range(args.rounds):  # alternate the two loops so machine noise hits both alike
        plains.append(plain_loop(make_model(args.preset, args.vocab, device, args.stock), batches, args.steps, args.warmup, args.grad_accum,
                                 device, args.compile))
        rounds.append(our_loop(make_model(args.preset, args.vocab, device, args.stock), batches, args.steps, args.warmup, args.grad_accum,
                               device, args.compile, p.context_length))
    plain = statistics.median(plains)
    ours = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratio = statistics.median(r["tokens_per_s"] / a for r, a in zip(rounds, plains))
    if args.profile:
        write_profile(make_model(args.preset, args.vocab, device, args.stock), batches, args.grad_accum, device, args.compile, args.profile)
    params = sum(x.numel() for x in make_model(args.preset, args.vocab, torch.device("cpu")).parameters())
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"{args.preset} ({params / 1e6:.1f} M params), batch {bs} x {p.context_length} x accum {args.grad_accum}, {name}"
          f"{', compiled' if args.compile else ''}{', stock HF modules' if args.stock else ', FusedLlama'}, {args.steps} timed steps after "
          f"{args.warmup} warm-up, median of {args.rounds} alternating rounds")
    print(f"  plain PyTorch loop  {plain:>12.0f} tokens/s")
    print(f"  our training loop   {ours['tokens_per_s']:>12.0f} tokens/s  ({ratio:.1%} of plain; target >= 95%)")
    if "mfu" in ours:
        print(f"  MFU (ours, PaLM formula, bf16 peak)  {ours['mfu']:.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"preset": args.preset, "device": name, "params": params, "model": "stock" if args.stock else "fused",
                                    "batch_size": bs, "compile": args.compile, "plain_tokens_per_s": plain, **ours,
                                    "ratio": ratio, "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    main()
