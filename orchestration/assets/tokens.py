"""Tokenizer, mixture and token-shard assets (unpartitioned: they read every curated partition)."""

from typing import Optional

import dagster as dg

from orchestration.assets.curation import curated_web
from orchestration.assets.ingest import OWNERS, source_assets
from orchestration.automation import DAILY
from orchestration.resources import LakeResource
from pipelines.tokenize import stages
from pipelines.tokenize.mixture import PRESETS
from pipelines.tokenize.shards import validate_shards

ALL_CURATED = dg.AssetDep(curated_web, partition_mapping=dg.AllPartitionMapping())
COMMON = dict(group_name="tokens", owners=OWNERS, tags={"stage": "tokens"}, automation_condition=DAILY)


def _rows_table(rows: list[dict]) -> dg.MetadataValue:
    cols = list(rows[0]) if rows else []
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in cols])
    return dg.MetadataValue.table([dg.TableRecord({k: str(v) for k, v in r.items()}) for r in rows], schema=schema)


class MixtureWeights(dg.Config):
    """A named preset (llama1, uniform, web_only) or explicit per-source weights (override the preset)."""

    preset: str = "llama1"
    weights: dict[str, float] = {}

    def resolved(self) -> dict[str, float]:
        if self.weights:
            return dict(self.weights)
        if self.preset not in PRESETS:
            raise dg.Failure(f"unknown mixture preset {self.preset!r}; choose one of {sorted(PRESETS)} or give weights")
        return dict(PRESETS[self.preset])


class TokenizerConfig(MixtureWeights):
    """Byte-level BPE trained on a weighted sample of the corpus, or a given tokenizer.json."""

    vocab_size: int = 8192
    sample_chars: int = 20_000_000
    model_max_length: int = 1024
    seed: int = 0
    tokenizer_json: Optional[str] = None


@dg.asset(deps=[ALL_CURATED, *source_assets], kinds={"python", "huggingface"}, code_version="1", **COMMON)
def tokenizer(context: dg.AssetExecutionContext, config: TokenizerConfig, lake: LakeResource) -> dg.MaterializeResult:
    """A transformers-loadable tokenizer directory: byte-level BPE, special tokens for documents and
    chat roles, pad/bos/eos and model_max_length set, and a chat template with assistant-mask markers."""
    m = stages.tokenizer_stage(lake.lake, vocab_size=config.vocab_size, sample_chars=config.sample_chars,
                               weights=config.resolved(), model_max_length=config.model_max_length, seed=config.seed,
                               tokenizer_json=config.tokenizer_json)
    fert = [{"group": g, **v} for g, v in m["fertility"].items()]
    return dg.MaterializeResult(metadata={
        "vocab_size": m["vocab_size"], "path": dg.MetadataValue.path(m["path"]), "trained_on": dg.MetadataValue.json(m["trained_on"]),
        "fertility": _rows_table(fert), "special_tokens": dg.MetadataValue.json(m["special_tokens"]),
    }, data_version=dg.DataVersion(m["content_hash"]))


class MixtureConfig(MixtureWeights):
    """Token budget 0 = the largest budget in which web text is not repeated and no source exceeds max_epochs."""

    token_budget: int = 0
    max_epochs: float = 4.0
    warn_epochs: float = 2.0
    seed: int = 0


@dg.asset(deps=[tokenizer, ALL_CURATED, *source_assets], kinds={"python", "parquet"}, code_version="1", **COMMON)
def mixture(context: dg.AssetExecutionContext, config: MixtureConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Which documents (and how many times) go into training, so that each source's share of
    *tokens* matches its weight. Output: one row per emitted document (source, id, repeat, tokens)."""
    m = stages.mixture_stage(lake.lake, weights=config.resolved(), token_budget=config.token_budget,
                             max_epochs=config.max_epochs, warn_epochs=config.warn_epochs, seed=config.seed)
    for w in m["warnings"]:
        context.log.warning(w)
    meta = {"token_budget": m["token_budget"], "realized_tokens": m["realized_tokens"], "documents": m["rows"],
            "shares": _rows_table(m["sources"]), "weights": dg.MetadataValue.json(m["weights"]),
            "path": dg.MetadataValue.path(m["path"])}
    if m["warnings"]:
        meta["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in m["warnings"]))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(m["content_hash"]))


class ShardsConfig(dg.Config):
    val_fraction: float = 0.02
    shard_tokens: int = 1 << 24
    seed: int = 0
    max_share_deviation: float = 0.02  # blocking check: realized vs target token share, sources with enough data


@dg.asset(deps=[mixture, tokenizer], kinds={"python", "numpy"}, code_version="1",
          check_specs=[dg.AssetCheckSpec("shards_valid", asset="tokenized_shards", blocking=True,
                                         description="Index matches files, every document ends in EOS, ids in vocabulary, hashes match."),
                       dg.AssetCheckSpec("shares_match_mixture", asset="tokenized_shards", blocking=True,
                                         description="Realized token share within the allowed deviation of the target, for every source "
                                                     "with enough data (not capped by max_epochs, target >= 20 mean documents).")],
          **COMMON)
def tokenized_shards(context: dg.AssetExecutionContext, config: ShardsConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Train/validation token shards (.ds + .ds.index, uint16 when the vocabulary fits), globally
    shuffled, EOS after every document, split by document id so repeats never leak into validation."""
    m = stages.shards_stage(lake.lake, val_fraction=config.val_fraction, shard_tokens=config.shard_tokens, seed=config.seed)
    problems = validate_shards(m["path"], m)
    mix = lake.lake.read_manifest("mixture")
    checked = {s["source"] for s in mix["sources"] if s["enough_data"]}
    deviations = {s: round(abs(m["realized_shares"].get(s, 0.0) - t), 4) for s, t in m["target_shares"].items() if s in checked}
    worst = max(deviations.values(), default=0.0)
    checks = [dg.AssetCheckResult(check_name="shards_valid", passed=not problems, metadata={"problems": dg.MetadataValue.json(problems[:20])}),
              dg.AssetCheckResult(check_name="shares_match_mixture", passed=worst <= config.max_share_deviation,
                                  metadata={"max_deviation": round(worst, 4), "deviations": dg.MetadataValue.json(deviations)})]
    shares = [{"source": s, "target": m["target_shares"].get(s, 0.0), "realized": r} for s, r in m["realized_shares"].items()]
    return dg.MaterializeResult(metadata={
        "train_tokens": m["tokens"]["train"], "validation_tokens": m["tokens"]["validation"],
        "documents": dg.MetadataValue.json(m["documents"]), "dtype": m["dtype"], "shards": sum(len(v) for v in m["splits"].values()),
        "shares": _rows_table(shares), "path": dg.MetadataValue.path(m["path"]),
        "lineage": dg.MetadataValue.json({"tokenizer_hash": m["tokenizer_hash"], "mixture_hash": m["mixture_hash"],
                                          "inputs": m["inputs"]}),
        "tokens_per_s": round(sum(m["tokens"].values()) / max(m["seconds"], 1e-9), 1),
    }, data_version=dg.DataVersion(m["content_hash"]), check_results=checks)


token_assets = [tokenizer, mixture, tokenized_shards]
