"""The serving app's configuration, written once: the CLI, the `deployment` asset's launchpad and
the logged start-up record all derive from these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.contract import param, require

REFUSAL = "I can't help with that request. It could cause harm. Is there something else I can help you with?"
FALLBACK_MESSAGE = "The assistant is temporarily unavailable. Please try again in a moment."


@dataclass(frozen=True)
class SafetyConfig:
    """Filters around the model. They reuse the curation taggers, so a served answer obeys the
    same PII and toxicity rules as the training data."""

    harm_categories: bool = param(True, "refuse prompts that ask for help with a harm category (weapons, "
                                        "violence, theft and fraud, intrusion, harassment, self-harm)")
    harm_patterns_file: str = param("", "JSON {category: [regex, ...]} replacing the built-in harm categories")
    input_toxicity_threshold: float = param(0.97, "refuse a prompt whose most toxic line scores at least this (1.01 = off)")
    output_toxicity_threshold: float = param(0.9, "replace an answer whose most toxic line scores at least this (1.01 = off)")
    toxicity_model: str = param("", "fastText toxicity classifier by path (default: alt-profanity-check, English)")
    redact_output_pii: bool = param(True, "replace emails, phones, cards, IBANs, SSNs, IPs in answers by typed placeholders")
    refusal_message: str = param(REFUSAL, "what a refused request gets as the assistant's answer")
    stream_holdback_chars: int = param(48, "a stream lags the model by this many characters so PII is redacted before it leaves")

    def __post_init__(self):
        for name in ("input_toxicity_threshold", "output_toxicity_threshold"):
            require(0 <= getattr(self, name) <= 1.01, self, name, "must be in [0, 1.01] (1.01 turns the filter off)")
        require(self.stream_holdback_chars >= 0, self, "stream_holdback_chars", "must be >= 0")


@dataclass(frozen=True)
class LimitsConfig:
    """Per-key rate limits (a key's own limits in the keys file win) and overload protection."""

    requests_per_minute: int = param(120, "requests per key per minute (sliding window); 429 with Retry-After past it")
    tokens_per_minute: int = param(20000, "prompt + max_tokens per key per minute, charged when the request starts")
    max_queue: int = param(64, "requests waiting for the model beyond this get the fallback message at once")
    request_timeout_s: float = param(60.0, "a generation not finished by then is cancelled and answered by the fallback")

    def __post_init__(self):
        for name in ("requests_per_minute", "tokens_per_minute", "max_queue"):
            require(getattr(self, name) > 0, self, name, "must be > 0")
        require(self.request_timeout_s > 0, self, "request_timeout_s", "must be > 0")


@dataclass(frozen=True)
class LogPolicy:
    """Structured request logs. Content is off by default; when on it is PII-redacted and sampled."""

    enabled: bool = param(True, "write one JSON line per request (ids, key name, version, tokens, latency, outcome)")
    log_content: bool = param(False, "also log prompts and answers (PII-redacted)")
    content_sample_rate: float = param(0.1, "share of requests whose content is logged when log_content is on")
    retention_days: int = param(14, "daily log files older than this are deleted")

    def __post_init__(self):
        require(0 <= self.content_sample_rate <= 1, self, "content_sample_rate", "must be in [0, 1]")
        require(self.retention_days >= 1, self, "retention_days", "must be >= 1")


@dataclass(frozen=True)
class ServeConfig:
    """The OpenAI-compatible server around the registry's current model version."""

    host: str = param("127.0.0.1", "interface to bind; keep loopback unless a proxy in front terminates TLS")
    port: int = param(8000, "TCP port")
    model_name: str = param("llm-foundry", "the model id clients send; the registry version is reported beside it")
    device: str = param("auto", "auto (CUDA when present), cpu, cuda ...")
    torch_threads: int = param(0, "CPU threads for the model; 0 = one for models under 50M parameters (measured faster: "
                                  "the event loop keeps a core), torch's default otherwise")
    max_batch_size: int = param(16, "concurrent requests generated together in one batch")
    batch_wait_ms: float = param(0.5, "an idle engine waits this long after a request for others to prefill with it")
    admit_every_steps: int = param(4, "a busy engine prefills waiting requests every this many decode steps (fewer, larger prefills)")
    default_max_tokens: int = param(128, "answer length when the client sets none (capped by the context window)")
    fallback: str = param("previous", "when the model fails: 'previous' (the previous version, then the message) or 'message'")
    fallback_message: str = param(FALLBACK_MESSAGE, "the answer when no model can serve a request")
    reload_poll_s: float = param(1.0, "how often the registry's CURRENT pointer is checked for a new version")
    shutdown_grace_s: float = param(30.0, "on SIGTERM, in-flight requests get this long to finish")
    keys_file: str = param("", "API keys file (hashes only); default <lake>/serving/keys.json")
    safety: SafetyConfig = field(default_factory=SafetyConfig, metadata={"doc": "input and output filters"})
    limits: LimitsConfig = field(default_factory=LimitsConfig, metadata={"doc": "rate limits, queue bound, timeout"})
    logging: LogPolicy = field(default_factory=LogPolicy, metadata={"doc": "request log policy"})

    def __post_init__(self):
        require(0 < self.port < 65536, self, "port", "must be a TCP port (1-65535)")
        require(self.max_batch_size >= 1, self, "max_batch_size", "must be >= 1")
        require(self.torch_threads >= 0, self, "torch_threads", "must be >= 0 (0 = automatic)")
        require(self.batch_wait_ms >= 0, self, "batch_wait_ms", "must be >= 0")
        require(self.admit_every_steps >= 1, self, "admit_every_steps", "must be >= 1")
        require(self.default_max_tokens >= 1, self, "default_max_tokens", "must be >= 1")
        require(self.fallback in ("previous", "message"), self, "fallback", "must be 'previous' or 'message'")
        require(self.reload_poll_s > 0 and self.shutdown_grace_s >= 0, self, "reload_poll_s", "must be > 0")
