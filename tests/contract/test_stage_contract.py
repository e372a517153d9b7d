"""The stage contract holds: one source of defaults, complete configs in manifests, pluggable taggers,
one-way dependencies, and lake paths owned by the lake."""

import ast
import dataclasses
import json
import re
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from evaluation.report import MODEL_ORDER
from evaluation.review import HUMAN_REVIEW, REVIEW_TASKS
from evaluation.stages import PROMOTED, REPORT, eval_stage
from evaluation.tasks import BUNDLED_TASKS
from orchestration.definitions import defs
from pipelines.contract import config_from_dict, config_to_dict
from pipelines.curation.stages import curation_stages
from pipelines.ingest import RAW_CRAWL, SOURCE_STAGES
from pipelines.tokenize.stages import MIXTURE, SHARDS, TOKENIZER
from serving.deploy import DEPLOY
from training.aligned import ALIGNED
from training.datasets import PREFERENCE_DATASET, SFT_DATASET
from training.dpo import DpoConfig
from training.feedback import HUMAN_PREFERENCES, RANKING_TASKS
from training.gguf_export import GGUF
from training.pretrain import PretrainConfig
from training.reward import RewardConfig
from training.rl import RlConfig
from training.sft import SftConfig

ROOT = Path(__file__).resolve().parents[2]


def _library_configs() -> dict[str, type]:
    stages = [RAW_CRAWL, *SOURCE_STAGES, *curation_stages(), TOKENIZER, MIXTURE, SHARDS, SFT_DATASET, PREFERENCE_DATASET,
              ALIGNED, RANKING_TASKS, HUMAN_PREFERENCES, REVIEW_TASKS, HUMAN_REVIEW,
              *(eval_stage(m) for m in MODEL_ORDER), REPORT, PROMOTED, GGUF, DEPLOY]
    return {**{s.name: s.config for s in stages}, "base_model": PretrainConfig, "sft_model": SftConfig, "dpo_model": DpoConfig,
            "reward_model": RewardConfig, "rl_model": RlConfig}


def _schema_defaults(config_type) -> dict:
    out = {}
    for name, f in config_type.fields.items():
        if f.default_provided:
            out[name] = f.default_value
        else:
            out[name] = _schema_defaults(f.config_type)
    return out


def test_every_dagster_config_default_is_the_library_default():
    configs = _library_configs()
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string(): graph.get(key).assets_def for key in graph.get_all_asset_keys()}
    assert set(assets) == set(configs)  # a new asset must come from a library stage config too
    for name, cls in configs.items():
        schema = assets[name].op.config_schema
        defaults = _schema_defaults(schema.config_type) if schema else {}
        assert defaults == config_to_dict(cls()), name
        for f in dataclasses.fields(cls):  # every knob documented once, in the library
            assert f.metadata.get("doc") or dataclasses.is_dataclass(f.type), f"{cls.__name__}.{f.name} has no doc"


def test_unknown_config_names_are_an_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match="max_stpes.*valid.*max_steps"):
        config_from_dict(PretrainConfig, {"max_stpes": 3})
    assert config_from_dict(PretrainConfig, {"max_steps": 3}).train_config().max_steps == 3


def test_every_manifest_records_its_complete_config(token_lake):
    by_name = {s.name: s.config for s in [*curation_stages(), TOKENIZER, MIXTURE, SHARDS, RAW_CRAWL]}
    checked = 0
    for name, cls in by_name.items():
        for manifest in token_lake.manifests(name):
            assert set(manifest["config"]) == {f.name for f in dataclasses.fields(cls)}, name
            checked += 1
    assert checked >= len(by_name)
    curated = token_lake.manifests("curated_web")[0]["config"]
    assert curated["toxicity_tags"]["max_toxic_fraction"] == 0.5 and curated["quality_tags"]["min_stop_words"] == 2


@pytest.fixture
def toy_tagger():
    from pipelines.curation.taggers import register, unregister
    from tests.contract.toy_tagger import TOY

    register(TOY)  # the one registration line a new tagger needs
    yield TOY
    unregister(TOY.name)


def test_a_registered_tagger_becomes_an_asset_with_its_check_and_a_curated_column(toy_tagger, sample_dir, resources):
    from orchestration.defs.curation import build_curation_defs
    from orchestration.defs.ingest import raw_crawl_defs
    from orchestration.partitions import crawl_files

    curation = build_curation_defs()
    defs_with_toy = dg.Definitions(assets=[*raw_crawl_defs, *curation], resources=resources)
    graph = defs_with_toy.resolve_asset_graph()
    assert dg.AssetKey("toy_digits") in graph.get_all_asset_keys()
    assert dg.AssetKey("toy_digits") in graph.get(dg.AssetKey("curated_web")).parent_keys
    assert any(c.name == "digit_counts_valid" for c in graph.get_check_keys_for_assets({dg.AssetKey("toy_digits")}))
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        result = dg.materialize([*raw_crawl_defs, *curation], partition_key=key, instance=instance, resources=resources,
                                run_config={"ops": {"curated_web": {"config": {"toy_digits": {"max_digits": 40}}}}})
        assert result.success
        assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["digit_counts_valid"]
    lake = resources["lake"].lake
    curated = pq.read_table(lake.data_path("curated_web", key))
    assert "digit_count" in curated.column_names and max(curated.column("digit_count").to_pylist()) <= 40
    manifest = lake.read_manifest("curated_web", key)
    assert "toy_digits" in manifest["inputs"] and manifest["config"]["toy_digits"] == {"max_digits": 40}
    assert manifest["reasons"].get("toy:too_many_digits", 0) > 0


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_runtime_libraries_do_not_import_the_sample_generator_or_dagster():
    for package in ("pipelines", "training", "evaluation", "serving"):
        for path in (ROOT / package).rglob("*.py"):
            if "sample" in path.relative_to(ROOT).parts:
                continue
            imported = _imports(path)
            assert not any(m.startswith("pipelines.sample") for m in imported), path
            assert not any(m == "dagster" or m.startswith("dagster.") for m in imported), path


def test_bundled_eval_tasks_match_the_sample_they_were_made_from():
    from pipelines.sample.eval_tasks import task_rows

    rows = [json.loads(line) for line in BUNDLED_TASKS.read_text(encoding="utf-8").splitlines()]
    assert rows == task_rows(0)  # rewrite with `python -m pipelines.sample.eval_tasks evaluation/data/bundled_tasks.jsonl`


def test_only_the_lake_spells_lake_paths():
    names = "_all|models|evals|dedup_index|run_failures.jsonl|catalog.duckdb|checkpoint|promoted|job.json|manifest.json|" \
            "registry|serving|keys.json|logs"
    joined = re.compile(rf'/ "({names})"|"({names})" /|"_all"')
    for package in ("pipelines", "training", "evaluation", "orchestration", "serving"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "lake.py":
                assert not joined.search(path.read_text()), f"{path}: ask Lake for the path"
