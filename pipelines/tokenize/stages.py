"""Tokenizer, mixture and shard stages over the lake.

    curated_web (all partitions) + source_* -> tokenizer -> mixture -> tokenized_shards

The tokenizer comes first so the mixture can count every document's tokens exactly
(weights are shares of tokens, EOS included), which is what makes the realized
shares of the shards match the targets.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import xxhash

from pipelines.contract import Check, CheckResult, Stage, StageContext, config_to_dict, param, require
from pipelines.ingest import SOURCE_KINDS as SOURCES
from pipelines.lake import Lake, atomic_directory
from pipelines.tokenize import mixture as mix
from pipelines.tokenize import shards as sh
from pipelines.tokenize import tokenizer as tk

BATCH_DOCS = 4096  # documents encoded per batch while writing shards
ROUNDTRIP_SAMPLES = 64  # documents decoded back and compared with their text before the shards are committed
MIXTURE_SCHEMA = pa.schema([("source", pa.string()), ("id", pa.string()), ("repeat", pa.int32()), ("tokens", pa.int64()),
                            ("asset", pa.string()), ("origin_file", pa.string())])


def load_corpus(lake: Lake, columns=("id", "text", "origin_file")) -> dict[str, pa.Table]:
    """Documents per mixture source: `web` = every curated_web partition, then each source_* asset."""
    con = lake.connect()
    out = {}
    assets = set(lake.assets())
    cols = ", ".join(columns)
    if "curated_web" in assets:
        out["web"] = con.sql(f"SELECT {cols}, lang FROM curated_web ORDER BY origin_file, origin_offset").to_arrow_table()
    for s in SOURCES:
        if f"source_{s}" in assets:
            out[s] = con.sql(f"SELECT {cols} FROM source_{s} ORDER BY origin_file, origin_offset").to_arrow_table()
    return {k: v for k, v in out.items() if v.num_rows}


def upstream_versions(lake: Lake) -> dict[str, str]:
    """asset[partition] -> content hash of every lake input the corpus is made of."""
    versions = {}
    for asset in ["curated_web", *(f"source_{s}" for s in SOURCES)]:
        for m in lake.manifests(asset):
            versions[f"{asset}[{m.get('partition') or ''}]"] = m["content_hash"]
    return versions


@dataclass(frozen=True)
class MixtureWeights:
    preset: str = param("llama1", f"named per-source weights: {', '.join(mix.PRESETS)}")
    weights: dict[str, float] = param({}, "explicit per-source weights, e.g. {web: 0.7, code: 0.3}; override the preset")

    def __post_init__(self):
        require(all(w >= 0 for w in self.weights.values()) and (not self.weights or sum(self.weights.values()) > 0),
                self, "weights", "weights must be >= 0 and not all zero")
        require(bool(self.weights) or self.preset in mix.PRESETS, self, "preset", f"choose one of {sorted(mix.PRESETS)} or give weights")

    def resolved(self) -> dict[str, float]:
        if self.weights:
            return dict(self.weights)
        if self.preset not in mix.PRESETS:
            raise ValueError(f"unknown mixture preset {self.preset!r}; choose one of {sorted(mix.PRESETS)} or give weights")
        return dict(mix.PRESETS[self.preset])


@dataclass(frozen=True)
class TokenizerConfig(MixtureWeights):
    """Byte-level BPE trained on a weighted sample of the corpus, or a given tokenizer.json."""

    vocab_size: int = param(8192, "BPE vocabulary size, special tokens included")
    sample_chars: int = param(20_000_000, "characters of text the BPE trains on (sampled by the weights)")
    model_max_length: int = param(1024, "longest sequence the tokenizer declares")
    seed: int = param(0, "seed of the training sample")
    tokenizer_json: str | None = param(None, "use this tokenizer.json instead of training one")

    def __post_init__(self):
        super().__post_init__()
        smallest = 256 + len(tk.SPECIAL_TOKENS)
        require(self.vocab_size >= smallest, self, "vocab_size", f"must be >= {smallest} (the byte alphabet plus the special tokens)")
        require(self.sample_chars > 0, self, "sample_chars", "must be > 0")
        require(self.model_max_length > 0, self, "model_max_length", "must be > 0")


@dataclass(frozen=True)
class MixtureConfig(MixtureWeights):
    """Which documents, and how often, go into training so each source's token share matches its weight."""

    token_budget: int = param(0, "tokens to select; 0 = the largest budget in which web text is not repeated and "
                                 "no source exceeds max_epochs")
    max_epochs: float = param(4.0, "most times any source may be repeated")
    warn_epochs: float = param(2.0, "warn when a source is repeated more than this")
    seed: int = param(0, "seed of the per-source sampling")

    def __post_init__(self):
        super().__post_init__()
        require(self.token_budget >= 0, self, "token_budget", "must be >= 0 (0 = automatic)")
        require(self.max_epochs > 0, self, "max_epochs", "must be > 0")
        require(self.warn_epochs > 0, self, "warn_epochs", "must be > 0")


@dataclass(frozen=True)
class ShardsConfig:
    """Train/validation token shards."""

    val_fraction: float = param(0.02, "share of documents (by id hash) in the validation split")
    shard_tokens: int = param(1 << 24, "tokens per shard file")
    seed: int = param(0, "seed of the global shuffle")
    max_share_deviation: float = param(0.02, "blocking check: largest realized-vs-target token share deviation "
                                             "for sources with enough data")

    def __post_init__(self):
        require(0 < self.val_fraction < 1, self, "val_fraction", "must be between 0 and 1 (exclusive)")
        require(self.shard_tokens > 0, self, "shard_tokens", "must be > 0")
        require(self.max_share_deviation >= 0, self, "max_share_deviation", "must be >= 0")


# ---- tokenizer -----------------------------------------------------------------------
def _sample_texts(corpus: dict[str, pa.Table], weights: dict[str, float], sample_chars: int, seed: int) -> list[str]:
    weights = mix.normalize_weights({s: weights.get(s, 0.0) for s in corpus} if any(weights.get(s) for s in corpus)
                                    else {s: 1.0 for s in corpus})
    texts = []
    for source in sorted(weights):
        rows = corpus[source].column("text").to_pylist()
        order = list(range(len(rows)))
        random.Random(f"{seed}:{source}").shuffle(order)
        budget, got = weights[source] * sample_chars, 0
        for i in order:
            if got >= budget:
                break
            texts.append(rows[i])
            got += len(rows[i])
    return texts


def tokenizer_stage(ctx: StageContext, cfg: TokenizerConfig) -> dict:
    lake = ctx.lake
    t0 = time.perf_counter()
    corpus = load_corpus(lake)
    if not corpus:
        raise FileNotFoundError("no documents in the lake: materialize curated_web and the source_* assets first")
    if cfg.tokenizer_json:
        tok, trained_on = tk.load_tokenizer_json(Path(cfg.tokenizer_json)), {"given": cfg.tokenizer_json}
    else:
        texts = _sample_texts(corpus, cfg.resolved(), cfg.sample_chars, cfg.seed)
        tok = tk.train_bpe(texts, cfg.vocab_size)
        trained_on = {"documents": len(texts), "chars": sum(map(len, texts))}
    final = lake.partition_dir("tokenizer")
    with atomic_directory(final) as tmp:
        tk.save_hf(tok, tmp, cfg.model_max_length)
    groups: dict[str, list[str]] = defaultdict(list)
    if "web" in corpus:
        for text, lang in zip(corpus["web"].column("text").to_pylist()[:4000], corpus["web"].column("lang").to_pylist()[:4000]):
            groups[f"web:{lang}"].append(text)
    for s in SOURCES:
        if s in corpus:
            groups[s] = corpus[s].column("text").to_pylist()[:1000]
    manifest = {"asset": "tokenizer", "path": str(final), "vocab_size": tok.get_vocab_size(), "content_hash": tk.tokenizer_hash(final),
                "special_tokens": tk.SPECIAL_TOKENS, "model_max_length": cfg.model_max_length, "trained_on": trained_on,
                "fertility": tk.fertility(tok, groups), "inputs": upstream_versions(lake), "config": config_to_dict(cfg),
                "seconds": round(time.perf_counter() - t0, 3)}
    lake.write_manifest("tokenizer", None, manifest)
    return manifest


# ---- mixture -------------------------------------------------------------------------
def _token_counts(tok, texts: list[str], batch: int = 2048) -> list[int]:
    out = []
    for i in range(0, len(texts), batch):
        out += [len(e.ids) + 1 for e in tok.encode_batch(texts[i:i + batch])]  # + EOS
    return out


def mixture_stage(ctx: StageContext, cfg: MixtureConfig) -> dict:
    lake, max_epochs, warn_epochs = ctx.lake, cfg.max_epochs, cfg.warn_epochs
    t0 = time.perf_counter()
    tok = tk.load_for_encoding(lake.partition_dir("tokenizer"))
    corpus = load_corpus(lake)
    weights = mix.normalize_weights(cfg.resolved())
    counts = {s: _token_counts(tok, corpus[s].column("text").to_pylist()) for s in weights if s in corpus}
    budget = cfg.token_budget or mix.auto_budget(weights, {s: sum(c) for s, c in counts.items()}, max_epochs)
    picks, plans = mix.plan_mixture(counts, weights, budget, max_epochs, cfg.seed)
    rows = []
    for source, idx in picks.items():
        table = corpus[source]
        ids, files = table.column("id").to_pylist(), table.column("origin_file").to_pylist()
        seen: Counter = Counter()
        for i in idx:
            rows.append({"source": source, "id": ids[i], "repeat": seen[i], "tokens": counts[source][i],
                         "asset": "curated_web" if source == "web" else f"source_{source}", "origin_file": files[i]})
            seen[i] += 1
    with lake.writer("mixture", None, MIXTURE_SCHEMA) as w:
        w.write_table(pa.Table.from_pylist(rows, schema=MIXTURE_SCHEMA))
        content_hash = w.commit()
    total = sum(p.selected_tokens for p in plans) or 1
    table = [{"source": p.source, "target_share": round(p.weight, 4), "realized_share": round(p.selected_tokens / total, 4),
              "target_tokens": p.target_tokens, "selected_tokens": p.selected_tokens, "available_tokens": p.available_tokens,
              "epochs": round(p.epochs, 3), "documents": p.documents, "capped": p.capped,
              "enough_data": p.granular and not p.capped} for p in plans]
    warnings = [f"{p.source} is repeated {p.epochs:.1f} times (more than {warn_epochs}); consider a smaller weight or more data"
                for p in plans if p.epochs > warn_epochs]
    warnings += [f"{p.source} cannot reach its target: capped at {max_epochs} epochs" for p in plans if p.capped]
    manifest = {"asset": "mixture", "path": lake.data_location("mixture"), "content_hash": content_hash, "rows": len(rows),
                "token_budget": budget, "realized_tokens": total, "weights": weights, "max_epochs": max_epochs, "seed": cfg.seed,
                "sources": table, "warnings": warnings, "tokenizer_hash": tk.tokenizer_hash(lake.partition_dir("tokenizer")),
                "inputs": upstream_versions(lake), "config": config_to_dict(cfg), "seconds": round(time.perf_counter() - t0, 3)}
    lake.write_manifest("mixture", None, manifest)
    return manifest


# ---- shards --------------------------------------------------------------------------
def _is_validation(doc_id: str, val_fraction: float) -> bool:
    """By document id, so every repeat of a document lands in the same split (no leakage)."""
    return xxhash.xxh64_intdigest(doc_id.encode()) % 1_000_000 < val_fraction * 1_000_000


def shards_stage(ctx: StageContext, cfg: ShardsConfig) -> dict:
    lake, val_fraction, seed = ctx.lake, cfg.val_fraction, cfg.seed
    t0 = time.perf_counter()
    tok_dir = lake.partition_dir("tokenizer")
    tok = tk.load_for_encoding(tok_dir)
    selection = lake.read_table("mixture")
    corpus = load_corpus(lake, columns=("id", "text"))
    text_of = {}
    for source, table in corpus.items():
        for doc_id, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist()):
            text_of[(source, doc_id)] = text
    order = list(range(selection.num_rows))
    random.Random(seed).shuffle(order)
    sources, ids = selection.column("source").to_pylist(), selection.column("id").to_pylist()
    vocab = tok.get_vocab_size()
    dtype = sh.token_dtype(vocab)
    eos = tok.token_to_id(tk.EOS)
    mixture_manifest = lake.read_manifest("mixture")
    if mixture_manifest["tokenizer_hash"] != tk.tokenizer_hash(tok_dir):
        raise ValueError("the mixture was planned with another tokenizer than the current one: re-materialize mixture")
    final = lake.partition_dir("tokenized_shards")
    realized: dict[str, Counter] = {"train": Counter(), "validation": Counter()}
    samples = {}
    with atomic_directory(final) as tmp:
        shutil.copytree(tok_dir, sh.tokenizer_dir(tmp))
        writers = {split: sh.ShardWriter(tmp / split, dtype, eos, cfg.shard_tokens) for split in ("train", "validation")}
        docs_in = {"train": 0, "validation": 0}
        is_val = {doc_id: _is_validation(doc_id, val_fraction) for doc_id in set(ids)}
        for start in range(0, len(order), BATCH_DOCS):
            chunk = order[start:start + BATCH_DOCS]
            texts = [text_of[(sources[i], ids[i])] for i in chunk]
            for i, text, enc in zip(chunk, texts, tok.encode_batch(texts)):
                split = "validation" if is_val[ids[i]] else "train"
                w = writers[split]
                if len(samples) < ROUNDTRIP_SAMPLES and docs_in[split] % 7 == 0:
                    samples[(split, f"{len(w.shards):05d}.ds", len(w._ends))] = text
                doc_ids = enc.ids
                w.add(doc_ids)
                docs_in[split] += 1
                realized[split][sources[i]] += len(doc_ids) + 1
        for w in writers.values():
            w.flush()
        # a sample that ended up in a shard flushed later keeps its (split, shard, doc) position
        manifest = {"asset": "tokenized_shards", "path": str(final), "dtype": dtype.str, "eos_id": eos, "vocab_size": vocab,
                    "splits": {s: w.shards for s, w in writers.items()}, "val_fraction": val_fraction, "seed": seed,
                    "tokenizer_hash": tk.tokenizer_hash(tok_dir), "mixture_hash": mixture_manifest["content_hash"],
                    "mixture_weights": mixture_manifest["weights"], "inputs": upstream_versions(lake),
                    "config": config_to_dict(cfg)}
        problems = sh.validate_shards(tmp, manifest, decode=lambda ids_: tok.decode(ids_, skip_special_tokens=False),
                                      texts_by_position=samples)
        if problems:
            raise ValueError("token shards failed validation: " + "; ".join(problems[:5]))
    total = {s: sum(c.values()) for s, c in realized.items()}
    all_tokens = Counter()
    for c in realized.values():
        all_tokens.update(c)
    grand = sum(all_tokens.values()) or 1
    targets = mixture_manifest["weights"]
    manifest.update({
        "tokens": total, "documents": {s: sum(x["documents"] for x in manifest["splits"][s]) for s in manifest["splits"]},
        "realized_shares": {s: round(all_tokens[s] / grand, 4) for s in sorted(all_tokens)},
        "target_shares": {s: round(w, 4) for s, w in sorted(targets.items())},
        "roundtrip_checked": len(samples), "seconds": round(time.perf_counter() - t0, 3),
    })
    manifest["content_hash"] = sh.manifest_hash(manifest)
    lake.write_manifest("tokenized_shards", None, manifest)
    return manifest


def _shards_valid(lake: Lake, manifest: dict) -> CheckResult:
    problems = sh.validate_shards(manifest["path"], manifest)
    problems += [f"the {split} split is empty" for split, n in manifest["tokens"].items() if n == 0]
    return CheckResult(not problems, {"problems": problems[:20]})


def _shares_match_mixture(lake: Lake, manifest: dict) -> CheckResult:
    checked = {s["source"] for s in lake.read_manifest("mixture")["sources"] if s["enough_data"]}
    deviations = {s: round(abs(manifest["realized_shares"].get(s, 0.0) - t), 4)
                  for s, t in manifest["target_shares"].items() if s in checked}
    worst = max(deviations.values(), default=0.0)
    return CheckResult(worst <= manifest["config"]["max_share_deviation"], {"max_deviation": round(worst, 4), "deviations": deviations})


TOKENIZER = Stage(
    name="tokenizer", config=TokenizerConfig, run=tokenizer_stage, inputs=("curated_web", *(f"source_{s}" for s in SOURCES)),
    description="A transformers-loadable tokenizer directory: byte-level BPE, special tokens for documents and chat roles, "
                "pad/bos/eos and model_max_length set, and a chat template with assistant-mask markers.")
MIXTURE = Stage(
    name="mixture", config=MixtureConfig, run=mixture_stage, inputs=("tokenizer", "curated_web", *(f"source_{s}" for s in SOURCES)),
    description="Which documents (and how many times) go into training, so that each source's share of *tokens* matches "
                "its weight. Output: one row per emitted document (source, id, repeat, tokens).")
SHARDS = Stage(
    name="tokenized_shards", config=ShardsConfig, run=shards_stage, inputs=("mixture", "tokenizer"),
    description="Train/validation token shards (.ds + .ds.index + .ds.metadata, uint16 when the vocabulary fits), globally shuffled, EOS "
                "after every document, split by document id so repeats never leak into validation.",
    checks=(Check("shards_valid", "Index matches files, every document ends in EOS, ids in vocabulary, hashes match.", _shards_valid),
            Check("shares_match_mixture", "Realized token share within the allowed deviation of the target, for every source "
                  "with enough data (not capped by max_epochs, target >= 20 mean documents).", _shares_match_mixture)))
