"""Training throughput: our loop vs a minimal plain-PyTorch loop, same model, same batches.

The plain loop is what a tutorial writes: forward with labels, backward, clip, AdamW
step. Ours adds token-normalized accumulation, the LR schedule, no-decay groups,
logging and (at the end) a resume checkpoint; the checkpoint is outside the timed
steps. On CUDA both use bf16 autocast (and torch.compile with --compile), and ours
reports MFU with the PaLM formula. Warm-up steps are excluded from both.

    python -m benchmarks.train_bench [--preset demo] [--steps 30] [--warmup 5] [--compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from training import loop
from training.presets import PRESETS, llama_config


def make_model(preset: str, vocab: int, device: torch.device, liger: bool = False):
    from transformers import LlamaForCausalLM

    if liger:  # fused Triton RMSNorm / RoPE / SwiGLU kernels (pip install liger-kernel); same for both loops
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False)

    torch.manual_seed(0)
    cfg = llama_config(preset, vocab, 0, 0, 1)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg).to(device)


def plain_loop(model, batches, steps: int, warmup: int, accum: int, device, compile_: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=device.type == "cuda")
    core = torch.compile(model) if compile_ else model
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
                loss = core(input_ids=x, labels=x).loss / accum
            loss.backward()
            tokens += x.numel()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the same per-step host sync our loop does when it records the loss
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def our_loop(model, batches, steps: int, warmup: int, accum: int, device, compile_: bool, context: int) -> dict:
    cfg = loop.TrainConfig(max_steps=warmup + steps, batch_size=batches[0].shape[0], grad_accum=accum, lr=1e-4, warmup_steps=1,
                           log_every=1, eval_every=10 ** 9, checkpoint_every=10 ** 9, compile=compile_, device=str(device))

    def source(step, micro, rank):
        x = batches[(step * accum + micro) % len(batches)]
        return x, x

    with tempfile.TemporaryDirectory() as tmp:
        state = loop.train(model, cfg, source, [], Path(tmp) / "state", context=context)
    timed = [h for h in state.history if h["step"] > warmup]
    out = {"tokens_per_s": statistics.median(h["tokens_per_s"] for h in timed)}
    if "mfu" in timed[0]:
        out["mfu"] = statistics.median(h["mfu"] for h in timed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--liger", action="store_true", help="use Liger's fused kernels (CUDA; liger-kernel installed)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train.json"))
    args = parser.parse_args()
    loop.configure_threads()
    device = loop.pick_device()
    p = PRESETS[args.preset]
    bs = args.batch_size or p.batch_size
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.vocab, (bs, p.context_length + 1), generator=g) for _ in range(8)]
    plain = plain_loop(make_model(args.preset, args.vocab, device, args.liger), batches, args.steps, args.warmup, args.grad_accum, device, args.compile)
    ours = our_loop(make_model(args.preset, args.vocab, device, args.liger), batches, args.steps, args.warmup, args.grad_accum, device,
                    args.compile, p.context_length)
    params = sum(x.numel() for x in make_model(args.preset, args.vocab, torch.device("cpu")).parameters())
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"{args.preset} ({params / 1e6:.1f} M params), batch {bs} x {p.context_length} x accum {args.grad_accum}, {name}"
          f"{', compiled' if args.compile else ''}{', liger' if args.liger else ''}, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"  plain PyTorch loop  {plain:>12.0f} tokens/s")
    print(f"  our training loop   {ours['tokens_per_s']:>12.0f} tokens/s  ({ours['tokens_per_s'] / plain:.1%} of plain; target >= 95%)")
    if "mfu" in ours:
        print(f"  MFU (ours, PaLM formula, bf16 peak)  {ours['mfu']:.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"preset": args.preset, "device": name, "params": params, "plain_tokens_per_s": plain, **ours,
                                    "ratio": ours["tokens_per_s"] / plain}, indent=2))


if __name__ == "__main__":
    main()
