"""Continuous batching over one Hugging Face checkpoint, on a worker thread.

The worker keeps a running batch with one KV cache. Every `admit_every` steps (at once when
idle) it admits waiting requests (up to `max_batch_size`): their prompts are prefilled together, their caches left-padded to the
running batch's length and concatenated to it. Then one decode step runs for every row; a row
that ends (end-of-turn token, stop string, its own token budget, cancelled) is answered at once
and its cache rows dropped. A new request therefore never waits for a long answer to finish,
and one forward pass serves every active request: on a small model per-step overhead dominates,
so 16 rows cost little more than one.

Each row keeps its own sampling (temperature 0 = greedy, top-p) and stop strings and streams
its text. Non-finite logits (a diverged or corrupted checkpoint) raise `ModelFailure` rather
than sample garbage, so the server can fall back. Rows are kept left-padded with a padding
mask and explicit position ids, the layout `generate()` uses for batches; the step itself is
`serving.forward` (fused Llama or the model's own forward); tests check that a row's tokens
equal `generate()`'s greedy output for the same prompt, on both.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch

from serving.forward import forward_for

SMALL_MODEL = 50_000_000  # parameters; below this a CPU engine runs torch on one thread unless told otherwise


class ModelFailure(RuntimeError):
    """The model could not produce an answer (exception in generate, non-finite logits)."""


class Overloaded(RuntimeError):
    """The queue is full; the caller answers with the fallback instead of waiting."""


@dataclass
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str  # stop | length | cancelled


@dataclass
class Job:
    """One request inside the engine. `on_text` receives deltas on the worker thread."""

    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    on_text: Callable[[str], None] | None = None
    future: Future = field(default_factory=Future)
    cancelled: bool = False
    token_ids: list[int] = field(default_factory=list)
    emitted: int = 0

    def cancel(self) -> None:
        """Stop generating for this request (client gone or timed out); the batch goes on."""
        self.cancelled = True


def pick_device(device: str) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


class _Row:
    """One active request: its stream of tokens and text, and when it is done."""

    def __init__(self, job: Job, tokenizer, eos_ids: set[int]):
        self.job, self.tok, self.eos = job, tokenizer, eos_ids
        self.text, self.done = "", False
        self.holdback = max((len(s) for s in job.stop), default=1) - 1

    def add(self, token: int) -> None:
        job = self.job
        if job.cancelled:
            return self.finish("cancelled")
        if token in self.eos:
            return self.finish("stop")
        job.token_ids.append(token)
        if not (job.stop or job.on_text):  # nothing looks at the text before the end: decode once, then
            return self.finish("length") if len(job.token_ids) >= job.max_new_tokens else None
        text = self.tok.decode(job.token_ids, skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in job.stop) if p >= 0), default=-1)
        self.text = text[:cut] if cut >= 0 else text
        if cut >= 0:
            return self.finish("stop")
        if len(job.token_ids) >= job.max_new_tokens:
            return self.finish("length")
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence waits for its next byte
            self._emit(len(text) - self.holdback)

    def _emit(self, upto: int) -> None:
        job = self.job
        if job.on_text and upto > job.emitted:
            job.on_text(self.text[job.emitted:upto])
            job.emitted = upto

    def finish(self, reason: str) -> None:
        self.done = True
        if not (self.job.stop or self.job.on_text):
            self.text = self.tok.decode(self.job.token_ids, skip_special_tokens=True)
        self._emit(len(self.text))
        if not self.job.future.done():
            self.job.future.set_result(Completion(self.text, len(self.job.token_ids), reason))

    def fail(self, error: Exception) -> None:
        self.done = True
        if not self.job.future.done():
            self.job.future.set_exception(error)


def sample(logits: torch.Tensor, jobs: list[Job]) -> torch.Tensor:
    """Next token per row: argmax where temperature is 0, else temperature + top-p sampling."""
    if not torch.isfinite(logits).all():
        raise ModelFailure("the model produced non-finite logits (diverged or corrupted weights)")
    logits = logits.float()
    choice = logits.argmax(dim=-1)
    sampled = [i for i, j in enumerate(jobs) if j.temperature > 0]
    if sampled:
        idx = torch.tensor(sampled, device=logits.device)
        temps = torch.tensor([jobs[i].temperature for i in sampled], device=logits.device)[:, None]
        top_p = torch.tensor([jobs[i].top_p for i in sampled], device=logits.device)[:, None]
        probs = (logits[idx] / temps).softmax(dim=-1)
        sorted_p, order = probs.sort(dim=-1, descending=True)
        sorted_p = sorted_p.masked_fill((sorted_p.cumsum(dim=-1) - sorted_p) > top_p, 0.0)
        choice[idx] = order.gather(1, torch.multinomial(sorted_p, 1)).squeeze(1)
    return choice


class Engine:
    """One loaded model version answering queued jobs with continuous batching."""

    def __init__(self, checkpoint: Path, version: str, device: str = "auto", max_batch_size: int = 16,
                 batch_wait_ms: float = 0.5, max_queue: int = 64, admit_every: int = 4, threads: int = 0,
                 fused: bool = True, on_batch: Callable[[int], None] | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.version, self.checkpoint = version, Path(checkpoint)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).to(self.device).eval()
        if self.device.type == "cpu" and threads:
            torch.set_num_threads(threads)
        elif self.device.type == "cpu" and sum(p.numel() for p in self.model.parameters()) < SMALL_MODEL:
            torch.set_num_threads(1)  # per-op overhead dominates; more threads spin and take the event loop's core
        text_config = self.model.config.get_text_config(decoder=True)
        if getattr(text_config, "sliding_window", None) or getattr(text_config, "layer_types", None) not in (None, []) and \
                set(text_config.layer_types) != {"full_attention"}:
            raise ModelFailure(f"{checkpoint}: only full-attention decoders are served (this one uses sliding windows)")
        defaults = GenerationConfig.from_pretrained(str(checkpoint))
        eos = defaults.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = defaults.pad_token_id if defaults.pad_token_id is not None else min(self.eos_ids)
        self.context_length = int(self.model.config.max_position_embeddings)
        self._forward = forward_for(self.model, fused)
        self.max_batch_size, self.batch_wait_s, self.max_queue = max_batch_size, batch_wait_ms / 1000, max_queue
        self.admit_every, self.on_batch = admit_every, on_batch
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closed = False
        self._rows: list[_Row] = []
        self._cache = None
        self._mask = None  # (rows, cached tokens): True where a row has a real token
        self._worker = threading.Thread(target=self._loop, name=f"engine-{version}", daemon=True)
        self._worker.start()

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])

    @property
    def closed(self) -> bool:
        return self._closed

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> Job:
        if self._closed:
            raise ModelFailure(f"model version {self.version} is shut down")
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"{self._queue.qsize()} requests are waiting (max_queue {self.max_queue})")
        self._queue.put(job)
        return job

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued and running, then stop the worker."""
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout)

    def _take(self, block: bool) -> tuple[list[Job], bool]:
        """Waiting jobs that fit in the batch; blocks for the first one when nothing runs."""
        jobs, closing = [], False
        room = self.max_batch_size - len(self._rows)
        deadline = None
        while len(jobs) < room:
            try:
                if block and not jobs:
                    job = self._queue.get()
                    deadline = time.monotonic() + self.batch_wait_s
                elif deadline is not None:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                closing = True
                break
            if job.cancelled:
                job.future.set_result(Completion("", 0, "cancelled"))
            else:
                jobs.append(job)
        return jobs, closing

    def _loop(self) -> None:
        closing, since_admit = False, 0
        while not (closing and not self._rows):
            if not closing and (not self._rows or since_admit >= self.admit_every):
                new, closing = self._take(block=not self._rows)
                if new:
                    self._guarded(self._admit, new)
                since_admit = 0
            if self._rows:
                self._guarded(self._step, None)
                since_admit += 1

    def _guarded(self, fn, arg) -> None:
        rows = list(self._rows)
        try:
            fn(arg) if arg is not None else fn()
        except Exception as exc:  # one failed step fails its requests, never the worker
            err = exc if isinstance(exc, ModelFailure) else ModelFailure(f"{type(exc).__name__}: {exc}")
            new_rows = [_Row(j, self.tokenizer, self.eos_ids) for j in (arg or [])]
            for r in rows + new_rows:
                r.fail(err)
            self._rows, self._cache, self._mask = [], None, None

    @torch.inference_mode()
    def _admit(self, jobs: list[Job]) -> None:
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.bool)
        for i, j in enumerate(jobs):
            ids[i, width - len(j.prompt_ids):] = torch.tensor(j.prompt_ids)
            mask[i, width - len(j.prompt_ids):] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits, cache = self._forward(ids, (mask.long().cumsum(-1) - 1).clamp(min=0), mask, None)
        rows = [_Row(j, self.tokenizer, self.eos_ids) for j in jobs]
        for r, t in zip(rows, sample(logits, jobs).tolist()):
            r.add(t)
            r.next_token = t
        if self.on_batch:
            self.on_batch(len(self._rows) + len(rows))
        self._merge(rows, cache, mask)

    def _merge(self, rows: list[_Row], cache, mask: torch.Tensor) -> None:
        """Append new rows (their cache and mask) to the running batch, left-padding the shorter side."""
        keep = [i for i, r in enumerate(rows) if not r.done]
        if not keep:
            return
        idx = torch.tensor(keep, device=mask.device)
        cache, mask = [(k[idx], v[idx]) for k, v in cache], mask[idx]
        if self._cache is not None:
            width = max(mask.shape[1], self._mask.shape[1])
            pad = lambda t, dim: torch.nn.functional.pad(t, (0, 0) * (t.dim() - 1 - dim) + (width - t.shape[dim], 0))
            cache = [(torch.cat([pad(k0, 2), pad(k1, 2)]), torch.cat([pad(v0, 2), pad(v1, 2)]))
                     for (k0, v0), (k1, v1) in zip(self._cache, cache)]
            mask = torch.cat([pad(self._mask, 1), pad(mask, 1)])
        self._cache, self._mask = cache, mask
        self._rows = self._rows + [rows[i] for i in keep]

    @torch.inference_mode()
    def _step(self) -> None:
        tokens = torch.tensor([[r.next_token] for r in self._rows], device=self.device)
        positions = self._mask.sum(-1, keepdim=True)
        self._mask = torch.cat([self._mask, torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        logits, self._cache = self._forward(tokens, positions, self._mask, self._cache)
        for r, t in zip(self._rows, sample(logits, [r.job for r in self._rows]).tolist()):
            r.add(t)
            r.next_token = t
        keep = [i for i, r in enumerate(self._rows) if not r.done]
        if len(keep) < len(self._rows):
            self._rows = [self._rows[i] for i in keep]
            if not keep:
                self._cache, self._mask = None, None
                return
            idx = torch.tensor(keep, device=self._mask.device)
            mask = self._mask[idx]
            start = int((~mask.any(0)).long().cumprod(0).sum())  # leading columns that are padding in every row
            self._cache = [(k[idx, :, start:], v[idx, :, start:]) for k, v in self._cache]
            self._mask = mask[:, start:]
