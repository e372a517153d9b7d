"""The stage contract every library stage follows, so orchestration can wire any stage the same way.

A stage is:

- one frozen config dataclass: the single place where each knob, its default and its
  documentation live (`param(default, doc)`). Dagster's launchpad schema, the training
  CLI and the manifests are all derived from it;
- a run function `(StageContext, config) -> manifest`: a JSON-able dict that records at
  least what `Manifest` names, including the complete config the stage ran with;
- its checks: plain functions `(lake, manifest) -> CheckResult` that judge the output
  (thresholds they need are read from the manifest's recorded config);
- its declared inputs (upstream stage names) and whether it is partitioned.

Nothing here imports dagster: `orchestration/factory.py` turns a `Stage` into an asset and
its `@asset_check`s.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pipelines.lake import Lake

if TYPE_CHECKING:
    from pipelines.ingest.remote import CrawlListing

_DOC = "doc"


def param(default: Any, doc: str) -> Any:
    """A config field with its default and the one sentence a user reads in the launchpad."""
    if isinstance(default, (dict, list)):  # a fresh copy per instance
        return field(default_factory=lambda: type(default)(default), metadata={_DOC: doc})
    return field(default=default, metadata={_DOC: doc})


def require(ok: bool, config: Any, name: str, rule: str) -> None:
    """Config validation at the boundary: a bad value fails before any work, naming field and fix."""
    if not ok:
        raise ValueError(f"{type(config).__name__}.{name} = {getattr(config, name)!r}: {rule}")


def field_doc(f: dataclasses.Field) -> str:
    return f.metadata.get(_DOC, "")


def config_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) for each field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def rounded(v: Any) -> Any:
    """Floats to 6 significant digits, inside lists and dicts too, so 0.024999999999999994 shows as 0.025."""
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [rounded(x) for x in v]
    return v


def config_to_dict(config: Any) -> dict:
    """Plain JSON values (tuples as lists, nested configs as dicts): what manifests record."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(config)


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin in (typing.Union, types.UnionType) and value is not None:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(inner[0], value) if len(inner) == 1 else value
    return value


def config_from_dict(cls: type, values: dict) -> Any:
    """Build a config dataclass from plain values (lists -> tuples, dicts -> nested configs).

    Unknown names are an error that lists the valid ones, so a typo never silently falls
    back to a default.
    """
    known = {f.name: tp for f, tp in config_fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; valid: {sorted(known)}")
    return cls(**{k: _coerce(known[k], v) for k, v in values.items()})


class Manifest(TypedDict, total=False):
    """What every stage's manifest.json holds (stages add their own keys)."""

    asset: str
    partition: str | None
    rows: int
    content_hash: str  # the Dagster data version of the output
    path: str
    seconds: float
    config: dict  # the complete config the stage ran with (config_to_dict)
    inputs: dict  # upstream name -> content hash (or input file facts)


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    metadata: dict = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Check:
    """A named judgement of a stage's output; blocking checks stop what depends on it."""

    name: str
    description: str
    evaluate: Callable[[Lake, Manifest], CheckResult]  # (lake, manifest) -> result
    blocking: bool = True


@dataclass(frozen=True)
class Inputs:
    """Where input data lives (the lake is separate): crawl files, other corpora, chat data."""

    crawl_dir: Path
    sources_dir: Path
    chat_dir: Path
    crawl_listing: CrawlListing | None = None  # a snapshot's file list and base URL, for crawl files not in crawl_dir


@dataclass(frozen=True)
class StageContext:
    lake: Lake
    partition: str | None = None
    inputs: Inputs | None = None
    log: Callable[[str], None] = print
    warn: Callable[[str], None] = print


@dataclass(frozen=True)
class Stage:
    """A library stage as orchestration sees it."""

    name: str  # asset name and lake directory
    config: type  # frozen dataclass of every knob
    run: Callable[[StageContext, Any], Manifest]  # writes the output and its manifest, returns the manifest
    description: str
    inputs: tuple[str, ...] = ()  # upstream stage names
    checks: tuple[Check, ...] = ()
    partitioned: bool = False
    reads_inputs: bool = False  # needs StageContext.inputs (crawl, sources or chat locations)
    # many partitions in one call (contexts, config, engine) -> manifests, for a stage whose partitions depend
    # on each other (dedup); None: `pipelines.engine.run_partitions` runs `run` once per partition, in parallel
    run_many: Callable[[list[StageContext], Any, Any], list[Manifest]] | None = None


def run_stage(stage: Stage, lake: Lake, partition: str | None = None, inputs: Inputs | None = None, log=print,
              **overrides) -> Manifest:
    """Run a stage outside Dagster (tests, benchmarks, scripts) with its defaults and some overrides."""
    return stage.run(StageContext(lake, partition, inputs, log, log), config_from_dict(stage.config, overrides))
