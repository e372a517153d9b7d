"""What a curation tagger is: one measurement per document, and how `curated_web` uses it.

Tag, then filter (Dolma's attribute model): a tagger's asset writes only `id` plus its
attribute columns, row for row with `deduped`; `curated_web` joins every registered
tagger's attributes and asks each, in registry order, whether to reject a document
(`reject`), then lets each rewrite the kept text (`rewrite`: PII redaction, toxic-line
removal). The reason travels with the decision, so every removal lands in the ledger
with a stable reason string.

A new tagger is one module defining a `Tagger` plus one `register(...)` line in
`pipelines/curation/taggers/__init__.py`: orchestration builds its asset, its checks and
its columns in `curated_web` from this description.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipelines.contract import Check


@dataclass(frozen=True)
class Rejection:
    """Why a document is removed: the ledger row's stage, reason, score and details."""

    stage: str
    reason: str
    score: float | None = None
    details: str = ""


@dataclass(frozen=True)
class NoConfig:
    """A tagger or filter without knobs."""


@dataclass(frozen=True)
class Tagger:
    name: str  # asset name, e.g. "language_id"
    description: str
    attributes: pa.Schema  # columns written beside `id` (names unique across taggers)
    tag: Callable[..., tuple[dict[str, pa.Array], dict]]  # (texts, tag config, **needed columns) -> (columns, extras)
    needs: tuple[str, ...] = ()  # attribute columns of other taggers it reads (e.g. `lang`), passed to `tag` by name
    tag_config: type = NoConfig  # knobs of the measurement: changing them re-tags
    filter_config: type = NoConfig  # thresholds applied in curated_web: changing them re-filters only
    reject: Callable[[dict, Any], Rejection | None] | None = None  # (joined row, filter config)
    rewrite: Callable[[str, dict, Any], tuple[str, dict] | Rejection] | None = None  # (text, row, cfg) -> (text, new columns)
    carry: tuple[pa.Field, ...] = ()  # columns it adds to curated_web (from its attributes or its rewrite)
    kept_summary: Callable[[list[dict]], dict] | None = None  # curated_web manifest facts about the kept rows
    checks: tuple[Check, ...] = ()  # on the tagger's own output
    curated_checks: tuple[Check, ...] = ()  # invariants it guarantees in curated_web's output
    kinds: tuple[str, ...] = ("python", "parquet")
