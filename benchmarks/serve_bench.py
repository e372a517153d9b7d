"""Load test: our serving app vs `transformers serve` on the same checkpoint and prompts.

Both servers run on loopback; N concurrent clients (the `openai` SDK's AsyncOpenAI) each send
their share of a fixed prompt list, greedy, max_tokens fixed, so both produce the same tokens.
Reported per server and concurrency: requests, errors, p50/p95/p99 latency, completion tokens/s
(each server's own count: transformers counts the end-of-turn token, we do not), requests/s, our
requests/s over theirs, and how many answers are the same text as ours.

    python -m benchmarks.serve_bench [--checkpoint lake/models/promoted] [--concurrency 1 8 16]

Ours runs with its safety filters, rate limits (set high) and request log on, as deployed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.lake import Lake
from pipelines.sample.chat import build_chat_data
from pipelines.settings import setting_path
from serving.config import LimitsConfig, ServeConfig
from serving.keys import KeyStore
from serving.process import call, free_port, start_server, stop_server, wait_ready
from serving.registry import Registry


def prompts(n: int) -> list[str]:
    chat = build_chat_data(seed=0)
    questions = [c["messages"][0]["content"] for c in chat["sft"]]
    return [questions[i % len(questions)] for i in range(n)]


async def load(base_url: str, key: str, model: str, concurrency: int, items: list[str], max_tokens: int) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=120)
    latencies, tokens, errors, answers = [], 0, [], {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in items:
        queue.put_nowait(p)

    async def worker():
        nonlocal tokens
        while not queue.empty():
            prompt = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                r = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                         max_tokens=max_tokens, temperature=0)
                latencies.append(time.perf_counter() - t0)
                tokens += r.usage.completion_tokens
                answers[prompt] = r.choices[0].message.content
            except Exception as exc:  # counted and reported, the run goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    await client.close()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"requests": len(items), "errors": len(errors), "first_error": errors[0] if errors else "",
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99)),
            "tokens_per_s": tokens / wall, "requests_per_s": len(latencies) / wall, "answers": answers}


def start_transformers_serve(checkpoint: Path, port: int, extra: list[str]) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("transformers")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), *extra, str(checkpoint)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}")
        try:
            if call(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError("transformers serve did not answer /health in 120 s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(setting_path("LAKE_DIR") / "models" / "promoted"))
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args(argv)
    checkpoint = Path(args.checkpoint).resolve()
    if not (checkpoint / "model.safetensors").exists():
        sys.exit(f"{checkpoint} is not a checkpoint: run `make demo` first or pass --checkpoint")
    items = prompts(args.requests)
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp) / "lake")
        reg = Registry(lake)
        reg.activate(reg.register(checkpoint).name)
        key = KeyStore(lake.api_keys_path()).add("bench")
        cfg = ServeConfig(port=free_port(), limits=LimitsConfig(requests_per_minute=10**6, tokens_per_minute=10**9, max_queue=4096))
        servers = [("ours", lambda: start_server(lake, cfg), lambda _: stop_server(lake), f"http://127.0.0.1:{cfg.port}", key,
                    "llm-foundry")]
        for name, extra in (("transformers serve", []), ("transformers serve --continuous-batching", ["--continuous-batching"])):
            port = free_port()
            servers.append((name, lambda extra=extra, port=port: start_transformers_serve(checkpoint, port, extra),
                            lambda proc: (proc.terminate(), proc.wait(30)), f"http://127.0.0.1:{port}", "none", str(checkpoint)))
        for name, start, stop, url, k, model in servers:
            try:
                handle = start()
            except Exception as exc:
                print(f"{name}: could not start ({exc})")
                continue
            try:
                if name == "ours":
                    wait_ready(url)
                asyncio.run(load(url, k, model, 2, items[:4], args.max_tokens))  # warm-up
                for c in args.concurrency:
                    results[name, c] = asyncio.run(load(url, k, model, c, items, args.max_tokens))
            finally:
                stop(handle)
    print(f"\n{args.requests} chat completions per level, greedy, max_tokens {args.max_tokens}, checkpoint {checkpoint}")
    print(f"{'server':42} {'conc':>4} {'errors':>6} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'tok/s':>8} {'req/s':>7} "
          f"{'ours/this':>9} {'same answers':>12}")
    for (name, c), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0] != "ours")):
        ours = results.get(("ours", c))
        ratio = f"{ours['requests_per_s'] / r['requests_per_s']:.2f}x" if ours and r["requests_per_s"] else "-"
        same = f"{sum(ours['answers'].get(p) == a for p, a in r['answers'].items()) if ours else 0}/{len(r['answers'])}"
        print(f"{name:42} {c:>4} {r['errors']:>6} {r['p50']:>7.3f} {r['p95']:>7.3f} {r['p99']:>7.3f} {r['tokens_per_s']:>8.1f} "
              f"{r['requests_per_s']:>7.2f} {ratio:>9} {same:>12}")
        if r["first_error"]:
            print(f"    first error: {r['first_error']}")

if __name__ == "__main__":
    main()
