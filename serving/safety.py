"""Input and output filters around the served model, built from the curation taggers' parts.

- Input: harm categories (patterns of a request for help with weapons, violence, theft and
  fraud, intrusion, harassment, self-harm; replaceable by a JSON file) and the toxicity scorer the
  curation stage uses. A hit is answered with the configured refusal; the model never sees it.
- Output: PII replaced by the same typed placeholders curation writes (`<EMAIL>`, `<PHONE>` ...),
  and an answer whose most toxic line crosses the threshold is replaced by the refusal.

Why patterns and not a guard model: nothing may be downloaded at run time and no safety
classifier ships offline on PyPI; a user with one plugs it in through `toxicity_model` (fastText)
or `harm_patterns_file`. The built-in patterns are a baseline, measured in README on the bundled
harmful and benign prompts.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.curation.pii import find_pii, redact
from pipelines.curation.toxicity import make_scorer
from serving.config import SafetyConfig

_ASK = r"(?:how (?:do|can|could|would|should) (?:i|we|you|one|someone)|how to|help me|teach me|tell me how|show me how|explain how|" \
       r"best way to|easiest way to|ways? to|steps to|instructions? (?:for|to)|guide to|write|give me|i want to|i need to)"
_LIVING = r"(?:someone|somebody|anyone|a (?:person|man|woman|child|kid|baby|dog|cat|horse|pet|neighbou?r|stranger)|people|him|her|them|" \
          r"(?:my|your|his|her|their|our|the|a) (?:\w+ )?(?:wife|husband|partner|ex|boss|coworker|colleague|neighbou?r|teacher|family|" \
          r"parents?|mother|father|mom|dad|brother|sister|child|children|kids?|baby|friend|classmate|dog|cat|pets?|roommate))"
HARM_PATTERNS: dict[str, list[str]] = {
    "weapons": [rf"{_ASK}\b.{{0,40}}\b(?:make|build|assemble|construct|create|get|buy|3d[- ]print)\b.{{0,30}}"
                r"\b(?:(?<!bath )bombs?|explosives?|detonators?|grenades?|molotov|napalm|nerve agents?|sarin|ricin|anthrax|bioweapons?|"
                r"chemical weapons?|ghost guns?|untraceable (?:gun|firearm)s?|silencers?)\b"],
    "violence": [rf"{_ASK}\b.{{0,40}}\b(?:kill|murder|poison|strangle|stab|shoot|torture|maim|drown|hurt|injure|beat up|kidnap)\b"
                 rf"\s+{_LIVING}"],
    "theft_fraud": [rf"{_ASK}\b.{{0,40}}\b(?:steal|shoplift|rob|pickpocket|embezzle|launder|counterfeit|forge|scam|defraud|skim)\b"
                    r"(?!\s+(?:the show|the spotlight|a glance|a kiss|second base|(?:my|your|his|her|their) hearts?))",
                    rf"{_ASK}\b.{{0,40}}\b(?:cheat on (?:my |our |a |the )?tax|evade (?:my |our )?taxes)",
                    r"\b(?:get|obtain|find|steal)\b.{0,30}\b(?:someone(?:'s| else's)|other people's|a stranger's)\b.{0,20}"
                    r"\b(?:credit card|card number|password|social security|bank (?:account|details)|identity)"],
    "intrusion": [rf"{_ASK}\b.{{0,40}}\b(?:hack|break) into\b.{{0,30}}\b(?:accounts?|e-?mails?|phones?|computers?|laptops?|networks?|"
                  r"wi-?fi|routers?|servers?|systems?|databases?|cars?|houses?|homes?|apartments?|buildings?|safes?|websites?)\b",
                  rf"{_ASK}\b.{{0,40}}\b(?:crack|bypass|brute[- ]force)\b.{{0,30}}\b(?:passwords?|wi-?fi|login|authentication|2fa)\b",
                  rf"{_ASK}\b.{{0,40}}\b(?:ransomware|keylogger|botnet|ddos|phishing (?:page|site|email)|malware)\b"],
    "harassment": [rf"{_ASK}\b.{{0,40}}\b(?:threatening|threaten|harass|stalk|dox|blackmail|intimidate)\b",
                   rf"{_ASK}\b.{{0,40}}\binsult(?:ing|s)?\b.{{0,40}}\b(?:coworker|colleague|neighbou?r|boss|classmate|ex|someone|"
                   r"him|her|them|appearance|looks|weight)\b"],
    "self_harm": [r"\b(?:kill|hurt|harm|cut|starve) (?:myself|yourself)\b", r"\b(?:suicide|self[- ]harm) (?:methods?|ways?|plan)\b",
                  r"\bhow (?:many|much) .{0,30} (?:to|would) (?:overdose|die)\b"],
}


@dataclass(frozen=True)
class Verdict:
    refused: bool
    category: str = ""  # harm category, or "toxicity"
    detail: str = ""


OK = Verdict(False)


def _compile(patterns: dict[str, list[str]]) -> dict[str, re.Pattern]:
    return {cat: re.compile("|".join(f"(?:{p})" for p in pats), re.IGNORECASE | re.DOTALL) for cat, pats in patterns.items()}


class BatchedScorer:
    """Scores the lines of concurrent requests in one call on its own thread. A classifier call has
    a fixed cost (about 3 ms for alt-profanity-check, whether 1 line or 64), so requests that
    arrive while one call runs share the next."""

    def __init__(self, scorer):
        self.scorer = scorer
        self._queue: queue.Queue[tuple[list[str], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="toxicity-scorer", daemon=True)
        self._thread.start()

    def score(self, lines: list[str]) -> Future:
        fut: Future = Future()
        self._queue.put((lines, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            batch = [item]
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            flat = [line for lines, _ in batch for line in lines]
            try:
                scores = self.scorer.score(flat) if flat else np.zeros(0, dtype=np.float32)
            except Exception as exc:  # each waiting request sees the error
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            pos = 0
            for lines, fut in batch:
                fut.set_result(scores[pos:pos + len(lines)])
                pos += len(lines)


class SafetyFilter:
    def __init__(self, cfg: SafetyConfig):
        self.cfg = cfg
        patterns = HARM_PATTERNS
        if cfg.harm_patterns_file:
            patterns = json.loads(Path(cfg.harm_patterns_file).read_text())
            if not isinstance(patterns, dict) or not all(isinstance(v, list) for v in patterns.values()):
                raise ValueError(f"{cfg.harm_patterns_file}: expected a JSON object {{category: [regex, ...]}}")
        self.harm = _compile(patterns) if cfg.harm_categories else {}
        self.scorer = BatchedScorer(make_scorer(cfg.toxicity_model or None))

    async def _toxicity(self, text: str) -> float:
        lines = [line for line in text.split("\n") if line.strip()]
        return float((await asyncio.wrap_future(self.scorer.score(lines))).max()) if lines else 0.0

    def close(self) -> None:
        self.scorer.close()

    async def check_input(self, messages: list[dict]) -> Verdict:
        """Judge the latest user turn (earlier turns were judged when they were sent)."""
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        for category, pattern in self.harm.items():
            m = pattern.search(text)
            if m:
                return Verdict(True, category, m.group(0)[:80])
        if self.cfg.input_toxicity_threshold <= 1 and (score := await self._toxicity(text)) >= self.cfg.input_toxicity_threshold:
            return Verdict(True, "toxicity", f"score {score:.2f}")
        return OK

    async def check_output(self, text: str) -> Verdict:
        if self.cfg.output_toxicity_threshold <= 1 and (score := await self._toxicity(text)) >= self.cfg.output_toxicity_threshold:
            return Verdict(True, "toxicity", f"score {score:.2f}")
        return OK

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """Typed placeholders for PII, and how many of each type were replaced."""
        if not self.cfg.redact_output_pii:
            return text, {}
        spans = find_pii(text)
        counts: dict[str, int] = {}
        for s in spans:
            counts[s.type] = counts.get(s.type, 0) + 1
        return redact(text, spans), counts

    def stream(self) -> StreamGuard:
        return StreamGuard(self)


@dataclass
class StreamGuard:
    """Filters a streamed answer: text leaves only once it is `stream_holdback_chars` behind the
    model and cut at whitespace, so a PII span is whole (and redacted) before any of it is sent."""

    safety: SafetyFilter
    raw: str = ""
    sent_raw: int = 0
    pii: dict[str, int] = field(default_factory=dict)
    verdict: Verdict = OK

    async def feed(self, delta: str) -> str:
        self.raw += delta
        cut = len(self.raw) - self.safety.cfg.stream_holdback_chars
        cut = self.raw.rfind(" ", self.sent_raw, max(cut, self.sent_raw)) if cut > self.sent_raw else -1
        return await self._release(cut) if cut > self.sent_raw else ""

    async def finish(self) -> str:
        return await self._release(len(self.raw))

    async def _release(self, cut: int) -> str:
        if self.verdict.refused:
            return ""
        segment = self.raw[self.sent_raw:cut]
        self.verdict = await self.safety.check_output(segment)
        if self.verdict.refused:
            return ""
        text, counts = self.safety.redact(segment)
        for k, v in counts.items():
            self.pii[k] = self.pii.get(k, 0) + v
        self.sent_raw = cut
        return text
