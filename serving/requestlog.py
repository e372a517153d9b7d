"""Structured request logs under a stated policy: one JSON line per request, content off by
default, when on PII-redacted and sampled, daily files deleted after `retention_days`."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path

import xxhash

from serving.config import LogPolicy


class RequestLog:
    def __init__(self, policy: LogPolicy, log_dir: Path, redact):
        self.policy, self.redact = policy, redact
        self._logger = logging.getLogger(f"llm_foundry.serving.requests.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler = None
        if policy.enabled:
            log_dir.mkdir(parents=True, exist_ok=True)
            self._handler = logging.handlers.TimedRotatingFileHandler(log_dir / "requests.jsonl", when="midnight", utc=True,
                                                                      backupCount=policy.retention_days, encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(self._handler)

    def sampled(self, request_id: str) -> bool:
        """Deterministic per request id, so a request is logged whole or not at all."""
        return xxhash.xxh64_intdigest(request_id.encode()) / 2**64 < self.policy.content_sample_rate

    def write(self, record: dict, prompt: str | None = None, answer: str | None = None) -> None:
        if not self._handler:
            return
        record = {"ts": round(time.time(), 3), **record}
        if self.policy.log_content and self.sampled(record["request_id"]):
            record["prompt"] = self.redact(prompt or "")[0]
            record["answer"] = self.redact(answer or "")[0]
        self._logger.info(json.dumps(record, sort_keys=True, ensure_ascii=False))

    def close(self) -> None:
        if self._handler:
            self._logger.removeHandler(self._handler)
            self._handler.close()
