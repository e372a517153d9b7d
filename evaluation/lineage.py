"""Which crawl files, filters, mixture and tokenizer made a model: one answer, from its lineage.json and the lake.

A checkpoint's lineage.json records what it was trained on at training time (the data
versions of every curated partition and corpus, the mixture, the tokenizer, its parent
checkpoint). This walks the chain (RL -> DPO or SFT, DPO -> SFT -> base; the reward model an RL policy
optimized is named beside it) and joins each recorded partition
with the lake's manifests: the crawl file and its hash, what ingest kept, what curation removed
and why, and the exact curation settings. A partition whose data version in the lake no longer
equals the recorded one is marked `changed since training` (the model was trained on an older
version; the ledger and manifests describe the newer one).

    llm-foundry-lineage [--lake lake] [--json] [promoted | aligned_model | rl_model | sft_model | base_model | v0003]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from pipelines.lake import Lake
from pipelines.settings import setting_path

_UPSTREAM = re.compile(r"^(?P<asset>[^\[]+)\[(?P<partition>.*)\]$")
_PARENT = (("reference_checkpoint", "reference_checkpoint_hash"), ("base_checkpoint", "base_checkpoint_hash"))


def checkpoint_dir(lake: Lake, model: str) -> Path:
    if model == "promoted":
        return lake.promoted_dir()
    if re.fullmatch(r"v\d+", model):
        return lake.registry_dir() / model
    return lake.checkpoint_dir(model)


def _manifest(lake: Lake, asset: str, partition: str | None = None) -> dict | None:
    return lake.read_manifest(asset, partition) if lake.has_manifest(asset, partition) else None


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _models(lake: Lake, start: Path) -> list[dict]:
    """The checkpoint chain from `start` back to the pretrained model, each with its lineage.json (paths in it
    are relative to the lake root)."""
    chain, directory = [], start
    while directory is not None:
        lineage = _read(directory / "lineage.json")
        if lineage is None:
            raise FileNotFoundError(f"{directory}/lineage.json not found: is this a checkpoint written by the training assets?")
        chain.append({"checkpoint": str(directory), "asset": lineage.get("asset"), "stage": lineage.get("stage"),
                      "alignment_method": lineage.get("alignment_method"), "reward_checkpoint": lineage.get("reward_checkpoint"),
                      "git_commit": lineage.get("git_commit"), "run_id": lineage.get("run_id"), "config": lineage.get("config"),
                      "parent_hash": next((lineage[h] for _, h in _PARENT if h in lineage), None),
                      "data": {k: lineage[k] for k in ("sft_dataset_hash", "preference_dataset_hash") if k in lineage},
                      "lineage": lineage})
        directory = next((lake.root / lineage[p] for p, _ in _PARENT if lineage.get(p)), None)
    return chain


def _crawl_partition(lake: Lake, partition: str, trained_hash: str) -> dict:
    curated = _manifest(lake, "curated_web", partition) or {}
    raw = _manifest(lake, "raw_crawl", partition) or {}
    deduped = _manifest(lake, "deduped", partition) or {}
    source = raw.get("inputs") or {}
    return {"partition": partition, "crawl_file": source.get("file"), "crawl_file_xxh3_128": source.get("xxh3_128"),
            "crawl_file_bytes": source.get("size"), "records": sum((raw.get("outcomes") or {}).values()) or None,
            "ingested": raw.get("rows"), "after_dedup": deduped.get("rows"), "kept": curated.get("rows"),
            "removed": dict(sorted((curated.get("reasons") or {}).items(), key=lambda kv: -kv[1])),
            "trained_version": trained_hash, "lake_version": curated.get("content_hash"),
            "changed_since_training": bool(curated) and curated.get("content_hash") != trained_hash,
            "curation_config": curated.get("config")}


def _tagger_configs(lake: Lake, partitions: list[str]) -> dict:
    """Tagger settings (models, weights) as recorded by each tagger's manifest, when every partition agrees."""
    out = {}
    for tagger in ("language_id", "pii_tags", "toxicity_tags", "quality_tags"):
        configs = {json.dumps((_manifest(lake, tagger, p) or {}).get("config"), sort_keys=True) for p in partitions}
        out[tagger] = json.loads(configs.pop()) if len(configs) == 1 else "differs by partition (see each manifest)"
    return out


def model_lineage(lake: Lake, model: str = "promoted") -> dict:
    chain = _models(lake, checkpoint_dir(lake, model))
    top = chain[0]["lineage"]
    crawl, corpora = [], []
    for key, version in sorted(top.get("upstream", {}).items()):
        m = _UPSTREAM.match(key)
        if m and m["asset"] == "curated_web":
            crawl.append(_crawl_partition(lake, m["partition"], version))
        elif m:
            manifest = _manifest(lake, m["asset"]) or {}
            corpora.append({"corpus": m["asset"].removeprefix("source_"), "trained_version": version,
                            "files": (manifest.get("inputs") or {}).get("files"), "documents": manifest.get("rows"),
                            "changed_since_training": bool(manifest) and manifest.get("content_hash") != version})
    configs = {json.dumps(p["curation_config"], sort_keys=True) for p in crawl if p["curation_config"]}
    tokenizer = _manifest(lake, "tokenizer") or {}
    return {
        "model": model,
        "chain": [{k: v for k, v in c.items() if k != "lineage"} for c in chain],
        "crawl_files": crawl,
        "corpora": corpora,
        "curation_filters": json.loads(configs.pop()) if len(configs) == 1 else ("differs by partition" if configs else None),
        "taggers": _tagger_configs(lake, [p["partition"] for p in crawl]),
        "mixture": {"hash": top.get("mixture_hash"), "weights": {k: round(v, 6) for k, v in (top.get("mixture_weights") or {}).items()}},
        "tokenizer": {"hash": top.get("tokenizer_hash"),
                      "vocab_size": tokenizer.get("vocab_size") if tokenizer.get("content_hash") == top.get("tokenizer_hash") else None},
        "token_shards": {"hash": top.get("shards_hash"), "tokens": top.get("shard_tokens")},
    }


def render(lineage: dict) -> str:
    lines = [f"Model `{lineage['model']}`:"]
    for c in lineage["chain"]:
        lines.append(f"  {c['asset']} ({c['stage']}) at {c['checkpoint']}, code {c['git_commit'] or 'unknown'}"
                     + "".join(f", {k} {v[:12]}" for k, v in c["data"].items())
                     + (f", reward model {c['reward_checkpoint']}" if c["reward_checkpoint"] else "")
                     + (f" [aligned by {c['alignment_method']}]" if c["alignment_method"] else ""))
    tok, mix, shards = lineage["tokenizer"], lineage["mixture"], lineage["token_shards"]
    lines.append(f"Tokenizer {tok['hash']}" + (f" ({tok['vocab_size']} tokens)" if tok["vocab_size"] else ""))
    lines.append(f"Mixture {mix['hash']}: " + ", ".join(f"{s} {w:.3f}" for s, w in sorted(mix["weights"].items())))
    lines.append(f"Token shards {shards['hash']}: {shards['tokens']}")
    lines.append(f"Crawl files ({len(lineage['crawl_files'])}):")
    for p in lineage["crawl_files"]:
        removed = ", ".join(f"{k} {v}" for k, v in p["removed"].items()) or "nothing"
        lines.append(f"  {p['crawl_file'] or p['partition']} (xxh3-128 {p['crawl_file_xxh3_128'] or 'not recorded'}): "
                     f"{p['records']} records -> {p['ingested']} documents -> {p['after_dedup']} after dedup -> {p['kept']} kept; "
                     f"removed: {removed}" + ("  [CHANGED SINCE TRAINING]" if p["changed_since_training"] else ""))
    for c in lineage["corpora"]:
        lines.append(f"  corpus {c['corpus']}: {c['documents']} documents from {c['files']}"
                     + ("  [CHANGED SINCE TRAINING]" if c["changed_since_training"] else ""))
    lines.append("Curation filters: " + json.dumps(lineage["curation_filters"], sort_keys=True))
    lines.append("Taggers: " + json.dumps(lineage["taggers"], sort_keys=True))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="promoted", help="promoted, a model asset, or a registry version (v0003)")
    parser.add_argument("--lake", type=Path, default=setting_path("LAKE_DIR"))
    parser.add_argument("--json", action="store_true", help="the answer as JSON")
    args = parser.parse_args()
    lineage = model_lineage(Lake(args.lake), args.model)
    print(json.dumps(lineage, indent=1) if args.json else render(lineage))


if __name__ == "__main__":
    main()
