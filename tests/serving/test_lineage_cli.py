"""`llm-foundry-lineage` on the demo-like lake built by the `deployed` fixture: which crawl files, filters,
mixture and tokenizer made the served model."""

import json
import shutil
import subprocess
import sys

from evaluation.lineage import model_lineage
from pipelines.lake import Lake, file_hash


def test_lineage_cli_names_the_crawl_files_filters_mixture_and_tokenizer(deployed, sample_dir):
    lake, _, _ = deployed
    out = subprocess.run([sys.executable, "-m", "evaluation.lineage", "--lake", str(lake.root), "--json"],
                         capture_output=True, text=True, check=True).stdout
    lineage = json.loads(out)
    assert [c["asset"] for c in lineage["chain"]] == ["dpo_model", "sft_model", "base_model"]  # the aligned model is the DPO variant
    assert lineage["chain"][0]["alignment_method"] == "dpo"
    for c in lineage["chain"]:  # lineage.json names lake paths relative to the lake root: a moved lake still resolves
        assert str(lake.root) not in (lake.root / c["checkpoint"] / "lineage.json").read_text()
    assert all(c["git_commit"] for c in lineage["chain"])
    crawl = {p["partition"]: p for p in lineage["crawl_files"]}
    assert set(crawl) == {p.name for p in (sample_dir / "crawl").iterdir()}
    for key, p in crawl.items():
        assert p["crawl_file_xxh3_128"] == file_hash(sample_dir / "crawl" / key)
        assert p["kept"] == lake.read_manifest("curated_web", key)["rows"] and not p["changed_since_training"]
        assert sum(p["removed"].values()) == p["after_dedup"] - p["kept"]
    assert lineage["curation_filters"]["language_id"]["keep_languages"] == ["en", "de", "fr", "es"]
    assert lineage["taggers"]["language_id"]["fasttext_weight"] == 0.35
    assert lineage["tokenizer"]["hash"] == lake.read_manifest("tokenizer")["content_hash"]
    assert lineage["mixture"]["hash"] == lake.read_manifest("tokenized_shards")["mixture_hash"]
    assert {c["corpus"] for c in lineage["corpora"]} == {"arxiv", "books", "code", "qa", "wiki"}
    text = subprocess.run([sys.executable, "-m", "evaluation.lineage", "--lake", str(lake.root)],
                          capture_output=True, text=True, check=True).stdout
    assert "Crawl files (" in text and "Mixture" in text and "CHANGED SINCE TRAINING" not in text


def test_a_partition_recurated_after_training_is_flagged(deployed, tmp_path):
    lake, _, _ = deployed
    copy = Lake(tmp_path / "lake")
    shutil.copytree(lake.root, copy.root, ignore=shutil.ignore_patterns("serving"))
    key = next(p["partition"] for p in model_lineage(copy)["crawl_files"])
    manifest = copy.read_manifest("curated_web", key)
    copy.write_manifest("curated_web", key, {**manifest, "content_hash": "0" * 32})  # as a re-run with new thresholds leaves it
    flagged = {p["partition"]: p["changed_since_training"] for p in model_lineage(copy)["crawl_files"]}
    assert flagged[key] and sum(flagged.values()) == 1
