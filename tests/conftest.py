"""Shared fixtures: one small generated sample per test session, fresh lakes per test."""

import json
from pathlib import Path

import pytest

from pipelines.lake import Lake
from pipelines.sample import generate_sample

SAMPLE_PAGES = 40


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
