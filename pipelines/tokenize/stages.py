"""Tokenizer, mixture and shard stages over the lake.

    curated_web (all partitions) + source_* -> tokenizer -> mixture -> tokenized_shards

The tokenizer comes first so the mixture can count every document's tokens exactly
(weights are shares of tokens, EOS included), which is what makes the realized
shares of the shards match the targets.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipelines.lake import Lake
from pipelines.tokenize import mixture as mix
from pipelines.tokenize import shards as sh
from pipelines.tokenize import tokenizer as tk

SOURCES = ("books", "code", "wiki", "arxiv", "qa")
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
        base = lake.root / asset
        if base.is_dir():
            for manifest in sorted(base.glob("*/manifest.json")):
                m = json.loads(manifest.read_text())
                versions[f"{asset}[{m.get('partition') or ''}]"] = m["content_hash"]
    return versions


@contextlib.contextmanager
def _atomic_dir(final: Path):
    """Build a directory beside `final`, then swap it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        old = final.parent / f".{final.name}.{uuid.uuid4().hex}.old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def tokenizer_stage(lake: Lake, *, vocab_size: int = 8192, sample_chars: int = 20_000_000, weights: dict | None = None,
                    model_max_length: int = 1024, seed: int = 0, tokenizer_json: str | None = None) -> dict:
    t0 = time.perf_counter()
    corpus = load_corpus(lake)
    if not corpus:
        raise FileNotFoundError("no documents in the lake: materialize curated_web and the source_* assets first")
    if tokenizer_json:
        tok, trained_on = tk.load_tokenizer_json(Path(tokenizer_json)), {"given": tokenizer_json}
    else:
        texts = _sample_texts(corpus, weights or mix.PRESETS["llama1"], sample_chars, seed)
        tok = tk.train_bpe(texts, vocab_size)
        trained_on = {"documents": len(texts), "chars": sum(map(len, texts))}
    final = lake.partition_dir("tokenizer")
    with _atomic_dir(final) as tmp:
        tk.save_hf(tok, tmp, model_max_length)
    groups: dict[str, list[str]] = defaultdict(list)
    if "web" in corpus:
        for text, lang in zip(corpus["web"].column("text").to_pylist()[:4000], corpus["web"].column("lang").to_pylist()[:4000]):
            groups[f"web:{lang}"].append(text)
    for s in SOURCES:
        if s in corpus:
            groups[s] = corpus[s].column("text").to_pylist()[:1000]
    manifest = {"asset": "tokenizer", "path": str(final), "vocab_size": tok.get_vocab_size(), "content_hash": tk.tokenizer_hash(final),
                "special_tokens": tk.SPECIAL_TOKENS, "model_max_length": model_max_length, "trained_on": trained_on,
                "fertility": tk.fertility(tok, groups), "inputs": upstream_versions(lake), "seconds": round(time.perf_counter() - t0, 3)}
    lake.write_manifest("tokenizer", None, manifest)
    return manifest


# ---- mixture -------------------------------------------------------------------------
def _token_counts(tok, texts: list[str], batch: int = 2048) -> list[int]:
    out = []
    for i in range(0, len(texts), batch):
        out += [len(e.ids) + 1 for e in tok.encode_batch(texts[i:i + batch])]  # + EOS
    return out


def mixture_stage(lake: Lake, *, weights: dict[str, float], token_budget: int = 0, max_epochs: float = 4.0,
                  warn_epochs: float = 2.0, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    tok = tk.load_for_encoding(lake.partition_dir("tokenizer"))
    corpus = load_corpus(lake)
    weights = mix.normalize_weights(weights)
    counts = {s: _token_counts(tok, corpus[s].column("text").to_pylist()) for s in weights if s in corpus}
    budget = token_budget or mix.auto_budget(weights, {s: sum(c) for s, c in counts.items()}, max_epochs)
    picks, plans = mix.plan_mixture(counts, weights, budget, max_epochs, seed)
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
    manifest = {"asset": "mixture", "path": str(lake.data_path("mixture")), "content_hash": content_hash, "rows": len(rows),
                "token_budget": budget, "realized_tokens": total, "weights": weights, "max_epochs": max_epochs, "seed": seed,
                "sources": table, "warnings": warnings, "tokenizer_hash": tk.tokenizer_hash(lake.partition_dir("tokenizer")),
                "inputs": upstream_versions(lake), "seconds": round(time.perf_counter() - t0, 3)}
    lake.write_manifest("mixture", None, manifest)
    return manifest


# ---- shards --------------------------------------------------------------------------
def _is_validation(doc_id: str, val_fraction: float) -> bool:
    """By document id, so every repeat of a document lands in the same split (no leakage)."""
    return xxhash.xxh64_intdigest(doc_id.encode()) % 1_000_000 < val_fraction * 1_000_000


def shards_stage(lake: Lake, *, val_fraction: float = 0.02, shard_tokens: int = 1 << 24, seed: int = 0,
                 batch_docs: int = 4096, roundtrip_samples: int = 64) -> dict:
    t0 = time.perf_counter()
    tok_dir = lake.partition_dir("tokenizer")
    tok = tk.load_for_encoding(tok_dir)
    selection = pq.read_table(lake.data_path("mixture"))
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
    final = lake.partition_dir("tokenized_shards")
    realized: dict[str, Counter] = {"train": Counter(), "validation": Counter()}
    samples = {}
    with _atomic_dir(final) as tmp:
        writers = {split: sh.ShardWriter(tmp / split, dtype, eos, shard_tokens) for split in ("train", "validation")}
        docs_in = {"train": 0, "validation": 0}
        is_val = {doc_id: _is_validation(doc_id, val_fraction) for doc_id in set(ids)}
        for start in range(0, len(order), batch_docs):
            chunk = order[start:start + batch_docs]
            texts = [text_of[(sources[i], ids[i])] for i in chunk]
            for i, text, enc in zip(chunk, texts, tok.encode_batch(texts)):
                split = "validation" if is_val[ids[i]] else "train"
                w = writers[split]
                if len(samples) < roundtrip_samples and docs_in[split] % 7 == 0:
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
                    "mixture_weights": mixture_manifest["weights"], "inputs": upstream_versions(lake)}
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
