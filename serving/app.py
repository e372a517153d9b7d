"""The OpenAI-compatible serving app around the registry's current model version.

    POST /v1/chat/completions   chat (streaming and not), OpenAI request/response shapes
    GET  /v1/models             the served model id (and, in `version`, the registry version)
    GET  /health                liveness: the process answers
    GET  /ready                 readiness: a model is loaded and the server is not draining
    GET  /metrics               Prometheus
    POST /admin/reload          check the registry now (admin key)

A request passes: API key -> request limit -> validation -> token limit -> input filter ->
batched generation (timeout; on failure the previous version, then the fallback message) ->
output filter (toxicity, PII redaction) -> response, request log, metrics. Every response says
which version answered in `system_fingerprint` and the `x-model-version` header.

Version switches: a watcher polls the registry's CURRENT pointer; the new version is loaded
beside the old one and swapped in between requests; requests already queued on the old version
finish there, so a promotion drops nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import limits
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.lake import Lake
from serving.config import ServeConfig
from serving.engine import Completion, Engine, Job, ModelFailure, Overloaded
from serving.keys import ApiKey, KeyStore
from serving.metrics import Metrics
from serving.registry import Registry, RegistryError
from serving.requestlog import RequestLog
from serving.safety import SafetyFilter

log = logging.getLogger("llm_foundry.serving")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str, headers: dict | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers, self.param = status, message, type_, code, headers or {}, param

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}},
                            status_code=self.status, headers=self.headers)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI fields we do not act on (user, metadata...) are accepted

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)


@dataclass
class Answer:
    """What the client gets for one request, and why."""

    text: str
    finish_reason: str
    completion_tokens: int
    served_by: str
    fallback: str = ""  # "", model_error, timeout, overloaded
    refusal: str = ""  # harm category / toxicity when a filter refused
    pii: dict | None = None


ROUTES = ("/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics", "/admin/reload")


class CountRequests:
    """ASGI middleware: requests by route and status, in-flight gauge, unhandled errors."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = "500"

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            self.metrics.errors.labels("internal").inc()
            raise
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(scope["path"] if scope["path"] in ROUTES else "other", status).inc()


class Slots:
    """The loaded versions: `current` answers, `previous` is the fallback."""

    def __init__(self):
        self.current: Engine | None = None
        self.previous: Engine | None = None
        self.failed: dict | None = None  # the pointer whose version would not load (not retried until it changes)


def create_app(cfg: ServeConfig, lake: Lake) -> FastAPI:
    registry = Registry(lake)
    keys = KeyStore(Path(cfg.keys_file) if cfg.keys_file else lake.api_keys_path())
    metrics = Metrics()
    safety = SafetyFilter(cfg.safety)
    limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
    slots = Slots()
    state = {"draining": False}
    switch_lock = asyncio.Lock()

    def load(version: str) -> Engine:
        v = registry.get(version)
        return Engine(v.path, v.name, cfg.device, cfg.max_batch_size, cfg.batch_wait_ms, cfg.limits.max_queue, cfg.admit_every_steps,
                      cfg.torch_threads, on_batch=metrics.batch_size.observe)

    async def sync_with_registry() -> None:
        """Load and swap in the version CURRENT names (and its fallback), if it changed."""
        async with switch_lock:
            pointer = registry.pointer()
            want, want_prev = pointer.get("version"), pointer.get("previous")
            cur = slots.current
            if not want or (cur and cur.version == want) or slots.failed == pointer:
                return
            try:
                new = await asyncio.to_thread(load, want)
            except Exception as exc:  # a bad version never replaces a working one
                slots.failed = pointer
                metrics.errors.labels("load").inc()
                log.error("model version %s failed to load, still serving %s: %s", want, cur.version if cur else None, exc)
                return
            retired = [e for e in (cur, slots.previous) if e is not None]
            prev = None
            if cfg.fallback == "previous" and want_prev:
                prev = next((e for e in retired if e.version == want_prev), None)
                if prev is None:
                    with contextlib.suppress(Exception):
                        prev = await asyncio.to_thread(load, want_prev)
            slots.current, slots.previous, slots.failed = new, prev, None
            metrics.switches.inc()
            metrics.model_info.clear()
            metrics.model_info.labels(want).set(1)
            log.info("serving model version %s (fallback %s)", want, prev.version if prev else None)
            for e in retired:
                if e is not prev:  # queued requests finish on it first
                    asyncio.get_running_loop().run_in_executor(None, e.close, cfg.shutdown_grace_s)

    async def watch() -> None:
        while True:
            await asyncio.sleep(cfg.reload_poll_s)
            try:
                await sync_with_registry()
            except Exception:  # keep watching; the error is in the log and the metrics
                metrics.errors.labels("registry").inc()
                log.exception("registry check failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await sync_with_registry()
        except RegistryError as exc:
            log.error("%s", exc)
        watcher = asyncio.create_task(watch())
        yield
        state["draining"] = True
        watcher.cancel()
        for e in (slots.current, slots.previous):
            if e is not None:
                await asyncio.to_thread(e.close, cfg.shutdown_grace_s)
        reqlog.close()
        safety.close()

    app = FastAPI(title="llm-foundry serving", lifespan=lifespan)
    reqlog = RequestLog(cfg.logging, lake.request_log_dir(), safety.redact)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    app.add_middleware(CountRequests, metrics=metrics)

    def authenticate(request: Request, role: str = "user") -> ApiKey:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        key = keys.verify(token)
        if key is None:
            metrics.errors.labels("auth").inc()
            raise ApiError(401, "Incorrect API key provided. Create one with `llm-foundry-serve add-key NAME`.",
                           "invalid_request_error", "invalid_api_key")
        if role == "admin" and key.role != "admin":
            raise ApiError(403, f"key {key.name!r} is not an admin key", "invalid_request_error", "insufficient_permissions")
        return key

    def charge(key: ApiKey, what: str, per_minute: int, cost: int = 1) -> None:
        item = limits.RateLimitItemPerMinute(per_minute)
        if cost > per_minute:
            raise ApiError(400, f"this request needs {cost} tokens (prompt + max_tokens) but key {key.name!r} may use "
                                f"{per_minute} per minute; lower max_tokens", "invalid_request_error", "tokens_over_limit")
        if not limiter.hit(item, what, key.name, cost=cost):
            reset = limiter.get_window_stats(item, what, key.name).reset_time
            metrics.rate_limited.labels(what).inc()
            raise ApiError(429, f"Rate limit reached for {what} per minute ({per_minute}) on key {key.name!r}.",
                           "rate_limit_error" if what == "requests" else "tokens", "rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))})

    async def generate(engine: Engine, messages: list[dict], max_tokens: int, req: ChatRequest, on_text=None,
                       prompt: list[int] | None = None) -> Completion:
        temperature = 0.0 if req.temperature is None else req.temperature
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        prompt = prompt or engine.encode_chat(messages)
        job = Job(prompt, max(1, min(max_tokens, engine.context_length - len(prompt))), temperature, req.top_p or 1.0, stop, on_text)
        engine.submit(job)
        metrics.queue_depth.set(engine.queue_depth())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), cfg.limits.request_timeout_s)
        finally:
            job.cancel()  # a no-op when finished; stops the row when timed out or the client left

    async def answer(engine: Engine, messages: list[dict], max_tokens: int, req: ChatRequest, prompt: list[int] | None = None) -> Answer:
        """The current version's answer, else the previous version's, else the fallback message."""
        reason = ""
        if engine.closed and slots.current is not None:  # retired by a version switch after this request arrived
            engine = slots.current
        for candidate in (engine, slots.previous if cfg.fallback == "previous" else None):
            if candidate is None or (candidate is slots.previous and candidate is engine):
                continue
            try:
                c = await generate(candidate, messages, max_tokens, req, prompt=prompt if candidate is engine else None)
                return Answer(c.text, c.finish_reason, c.completion_tokens, candidate.version, reason)
            except Overloaded:
                reason = reason or "overloaded"
                break  # the fallback version is not for load: it would slow everyone down
            except TimeoutError:
                reason = reason or "timeout"
                break
            except ModelFailure as exc:
                reason = reason or "model_error"
                metrics.errors.labels("model").inc()
                log.error("model version %s failed: %s", candidate.version, exc)
        return Answer(cfg.fallback_message, "stop", 0, "fallback_message", reason)

    def body_of(request_json: Any) -> ChatRequest:
        try:
            return ChatRequest.model_validate(request_json)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ApiError(400, f"invalid request: {'.'.join(map(str, first['loc']))}: {first['msg']}", "invalid_request_error",
                           "invalid_request", param=".".join(map(str, first["loc"]))) from exc

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        t0, request_id = time.perf_counter(), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        key = authenticate(request)
        try:
            raw = await request.json()
        except ValueError as exc:
            raise ApiError(400, "the body is not JSON", "invalid_request_error", "invalid_json") from exc
        req = body_of(raw)
        engine = slots.current
        if engine is None or state["draining"]:
            raise ApiError(503, "no model version is loaded yet (see /ready)", "server_error", "not_ready")
        if req.model != cfg.model_name:
            raise ApiError(404, f"The model {req.model!r} does not exist; this server serves {cfg.model_name!r}",
                           "invalid_request_error", "model_not_found", param="model")
        charge(key, "requests", key.requests_per_minute or cfg.limits.requests_per_minute)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        prompt = engine.encode_chat(messages)
        prompt_tokens = len(prompt)
        room = engine.context_length - prompt_tokens
        if room < 1:
            raise ApiError(400, f"the prompt is {prompt_tokens} tokens; this model's context is {engine.context_length}",
                           "invalid_request_error", "context_length_exceeded", param="messages")
        max_tokens = min(req.max_completion_tokens or req.max_tokens or cfg.default_max_tokens, room)
        charge(key, "tokens", key.tokens_per_minute or cfg.limits.tokens_per_minute, prompt_tokens + max_tokens)
        metrics.tokens.labels("prompt").inc(prompt_tokens)
        verdict = await safety.check_input(messages)
        if verdict.refused:
            metrics.refusals.labels("input", verdict.category).inc()
        prompt_text = messages[-1]["content"]

        def finished(a: Answer) -> None:
            metrics.tokens.labels("completion").inc(a.completion_tokens)
            metrics.latency.labels("chat").observe(time.perf_counter() - t0)
            if a.fallback:
                metrics.fallbacks.labels(a.fallback, a.served_by).inc()
            for kind, n in (a.pii or {}).items():
                metrics.filter_hits.labels(f"pii:{kind}").inc(n)
            reqlog.write({"request_id": request_id, "key": key.name, "model_version": a.served_by, "finish_reason": a.finish_reason,
                          "prompt_tokens": prompt_tokens, "completion_tokens": a.completion_tokens, "stream": req.stream,
                          "latency_s": round(time.perf_counter() - t0, 4), "refusal": a.refusal, "fallback": a.fallback,
                          "pii_redacted": a.pii or {}}, prompt_text, a.text)

        headers = {"x-request-id": request_id, "x-model-version": engine.version}
        if req.stream:
            return StreamingResponse(stream(engine, request_id, messages, max_tokens, req, verdict, prompt, finished, t0),
                                     media_type="text/event-stream", headers=headers)
        if verdict.refused:
            a = Answer(cfg.safety.refusal_message, "content_filter", 0, engine.version, refusal=verdict.category)
        else:
            a = await answer(engine, messages, max_tokens, req, prompt)
            out = await safety.check_output(a.text)
            if out.refused:
                metrics.refusals.labels("output", out.category).inc()
                a.text, a.finish_reason, a.refusal = cfg.safety.refusal_message, "content_filter", out.category
            else:
                a.text, a.pii = safety.redact(a.text)
        finished(a)
        if a.fallback:
            headers["x-fallback"] = a.fallback
        headers["x-model-version"] = a.served_by
        message = {"role": "assistant", "content": a.text, "refusal": a.text if a.refusal else None}
        return JSONResponse({"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": cfg.model_name,
                             "system_fingerprint": a.served_by,
                             "choices": [{"index": 0, "message": message, "finish_reason": a.finish_reason, "logprobs": None}],
                             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": a.completion_tokens,
                                       "total_tokens": prompt_tokens + a.completion_tokens}}, headers=headers)

    async def stream(engine: Engine, request_id: str, messages: list[dict], max_tokens: int, req: ChatRequest, verdict,
                     prompt: list[int], finished, t0: float) -> AsyncIterator[str]:
        created, prompt_tokens = int(time.time()), len(prompt)

        def chunk(delta: dict, finish: str | None = None, version: str = engine.version, usage: dict | None = None) -> str:
            body = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": cfg.model_name,
                    "system_fingerprint": version, "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        guard, sent_any = safety.stream(), False
        if verdict.refused:
            a = Answer(cfg.safety.refusal_message, "content_filter", 0, engine.version, refusal=verdict.category)
            yield chunk({"content": a.text})
        else:
            loop, q = asyncio.get_running_loop(), asyncio.Queue()
            task = asyncio.ensure_future(generate(engine, messages, max_tokens, req, lambda d: loop.call_soon_threadsafe(q.put_nowait, d),
                                                  prompt))
            task.add_done_callback(lambda _: q.put_nowait(None))
            try:
                while (delta := await q.get()) is not None:
                    out = await guard.feed(delta)
                    if out:
                        if not sent_any:
                            metrics.first_token.observe(time.perf_counter() - t0)
                        sent_any = True
                        yield chunk({"content": out})
                    if guard.verdict.refused:
                        break
                if guard.verdict.refused:  # the finally below stops the generation
                    a = Answer("", "content_filter", 0, engine.version)
                else:
                    try:
                        c = await task
                        a = Answer("", c.finish_reason, c.completion_tokens, engine.version)
                    except (ModelFailure, Overloaded, TimeoutError) as exc:
                        if sent_any:  # part of the answer is out: say the stream broke rather than switch models mid-answer
                            metrics.errors.labels("model").inc()
                            yield f"data: {json.dumps({'error': {'message': str(exc) or type(exc).__name__, 'type': 'server_error'}})}\n\n"
                            yield "data: [DONE]\n\n"
                            finished(Answer("", "error", 0, engine.version, "stream_broken"))
                            return
                        a = await answer(engine, messages, max_tokens, req)  # retries on the fallback path, then the message
                        guard = safety.stream()
                        if out := await guard.feed(a.text):  # what the guard releases at once goes out too
                            metrics.first_token.observe(time.perf_counter() - t0)
                            sent_any = True
                            yield chunk({"content": out}, version=a.served_by)
            finally:
                task.cancel()
            rest = await guard.finish()
            if guard.verdict.refused:
                metrics.refusals.labels("output", guard.verdict.category).inc()
                a.text, a.finish_reason, a.refusal = cfg.safety.refusal_message, "content_filter", guard.verdict.category
                yield chunk({"content": ("\n" if sent_any else "") + a.text}, version=a.served_by)
            else:
                if rest:
                    if not sent_any:
                        metrics.first_token.observe(time.perf_counter() - t0)
                    yield chunk({"content": rest}, version=a.served_by)
                a.text, a.pii = guard.raw, guard.pii
        yield chunk({}, a.finish_reason, version=a.served_by)
        if req.stream_options and req.stream_options.include_usage:
            yield chunk({}, usage={"prompt_tokens": prompt_tokens, "completion_tokens": a.completion_tokens,
                                   "total_tokens": prompt_tokens + a.completion_tokens}, version=a.served_by)
        yield "data: [DONE]\n\n"
        finished(a)

    @app.get("/v1/models")
    async def models(request: Request):
        authenticate(request)
        cur = slots.current
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "created": int(time.time()), "owned_by": "llm-foundry",
                                            "version": cur.version if cur else None}]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        cur, prev = slots.current, slots.previous
        body = {"status": "ready" if cur and not state["draining"] else "not_ready", "version": cur.version if cur else None,
                "fallback_version": prev.version if prev else None, "context_length": cur.context_length if cur else None}
        return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)

    @app.get("/metrics")
    async def prometheus():
        if slots.current is not None:
            metrics.queue_depth.set(slots.current.queue_depth())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload")
    async def reload(request: Request):
        authenticate(request, role="admin")
        await sync_with_registry()
        cur = slots.current
        return {"version": cur.version if cur else None, "pointer": registry.pointer()}

    return app
