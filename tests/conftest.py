"""Shared fixtures: one small generated sample per test session, fresh lakes per test."""

import json
from pathlib import Path

import pytest

from pipelines.lake import Lake
from pipelines.sample import generate_sample

SAMPLE_PAGES = 40


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3-compatible server on 127.0.0.1, one per session; tests make their own buckets."""
    from tests.servers import moto_s3

    with moto_s3() as url:
        yield url


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """AWS settings pointing every S3 client (pyarrow's included) at the local server; yields its URL."""
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture
def resources(sample_dir, tmp_path):
    """Dagster resources over a fresh lake and the session's sample (the local engine)."""
    from orchestration.resources import EngineResource, InputsResource, LakeResource

    return {"engine": EngineResource(), "lake": LakeResource(root=str(tmp_path / "lake")),
            "inputs": InputsResource(crawl_dir=str(sample_dir / "crawl"), sources_dir=str(sample_dir / "sources"))}


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    generate_sample(root, seed=7, n_files=3, pages_per_file=SAMPLE_PAGES)
    return root


@pytest.fixture(scope="session")
def truth(sample_dir) -> dict[str, dict]:
    """Planted ground truth, keyed by URL."""
    lines = (sample_dir / "crawl_truth.jsonl").read_text(encoding="utf-8").splitlines()
    return {rec["url"]: rec for rec in map(json.loads, lines)}


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def token_lake(sample_dir, tmp_path_factory) -> Lake:
    """A lake with one curated crawl partition, the sources, a small tokenizer, a mixture and shards."""
    from pipelines.contract import run_stage
    from pipelines.curation.stages import curation_stages
    from pipelines.ingest import ingest_crawl_file, ingest_source_dir
    from pipelines.tokenize import stages as tok

    lake = Lake(tmp_path_factory.mktemp("token_lake"))
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    ingest_crawl_file(lake, sample_dir / "crawl", key)
    for stage in curation_stages():
        run_stage(stage, lake, key)
    for s in tok.SOURCES:
        ingest_source_dir(lake, sample_dir / "sources", s)
    run_stage(tok.TOKENIZER, lake, vocab_size=600, model_max_length=64)
    run_stage(tok.MIXTURE, lake, weights={"web": 0.6, "books": 0.2, "code": 0.2})
    run_stage(tok.SHARDS, lake, val_fraction=0.1, shard_tokens=4000)
    return lake
