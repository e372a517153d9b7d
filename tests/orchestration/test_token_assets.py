import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from transformers import AutoTokenizer

from orchestration.definitions import defs
from orchestration.defs.curation import curation_assets
from orchestration.defs.ingest import raw_crawl_defs, source_assets
from orchestration.defs.tokens import token_assets
from orchestration.factory import assets_only
from orchestration.partitions import crawl_files

ALL = [*raw_crawl_defs, *curation_assets, *source_assets, *token_assets]
SHARDS = {"tokenized_shards": {"config": {"shard_tokens": 20000}}}
TOKENS = {"ops": {"tokenizer": {"config": {"vocab_size": 2000}}, **SHARDS,
                  "mixture": {"config": {"weights": {"web": 0.6, "code": 0.2, "qa": 0.2}}}}}


@pytest.fixture(scope="module")
def materialized(sample_dir, tmp_path_factory):
    """One crawl partition curated, the sources ingested, then tokenizer -> mixture -> shards."""
    from orchestration.resources import EngineResource, InputsResource, LakeResource

    resources = {"engine": EngineResource(), "lake": LakeResource(root=str(tmp_path_factory.mktemp("lake"))),
                 "inputs": InputsResource(crawl_dir=str(sample_dir / "crawl"), sources_dir=str(sample_dir / "sources"))}
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        assert dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=key, instance=instance, resources=resources).success
        assert dg.materialize(source_assets, instance=instance, resources=resources).success
        result = dg.materialize(ALL, selection=assets_only(token_assets), instance=instance, resources=resources, run_config=TOKENS)
        assert result.success
        yield instance, resources, result


def test_token_chain_checks_and_shares(materialized):
    instance, resources, result = materialized
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"shards_valid": True, "shares_match_mixture": True}
    lake = resources["lake"].lake
    shards = lake.read_manifest("tokenized_shards")
    mixture = lake.read_manifest("mixture")
    assert sum(row["enough_data"] for row in mixture["sources"]) >= 2
    for row in mixture["sources"]:
        if row["enough_data"]:
            assert abs(shards["realized_shares"][row["source"]] - row["target_share"]) <= 0.02, row
    assert shards["tokens"]["validation"] > 0 and shards["dtype"] == "<u2"
    assert shards["mixture_hash"] == mixture["content_hash"]
    assert any(k.startswith("curated_web[") for k in shards["inputs"])
    tok = AutoTokenizer.from_pretrained(str(lake.partition_dir("tokenizer")))
    assert tok.eos_token == "<|endoftext|>" and tok.model_max_length == 1024
    meta = result.asset_materializations_for_node("tokenizer")[0].metadata
    groups = {r.data["fertility"] for r in meta["fertility"].records}
    assert {"web:en", "code", "books"} <= groups


def test_changing_a_mixture_weight_makes_downstream_stale(materialized):
    instance, resources, _ = materialized
    graph = defs.resolve_asset_graph()

    def status(asset):
        return CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance)).get_status(asset.key)

    tokenized_shards = token_assets[2]
    assert status(tokenized_shards) == StaleStatus.FRESH
    cfg = {"ops": {"mixture": {"config": {"weights": {"web": 0.5, "code": 0.3, "books": 0.2}}}}}
    assert dg.materialize(ALL, selection=[token_assets[1]], instance=instance, resources=resources, run_config=cfg).success
    assert status(tokenized_shards) == StaleStatus.STALE
    assert dg.materialize(ALL, selection=[tokenized_shards], instance=instance, resources=resources, run_config={"ops": SHARDS}).success
    assert status(tokenized_shards) == StaleStatus.FRESH
    shares = resources["lake"].lake.read_manifest("tokenized_shards")["realized_shares"]
    assert abs(shares["code"] - 0.3) <= 0.02 and "wiki" not in shares and "books" in shares


def test_unknown_preset_names_the_choices(materialized):
    instance, resources, _ = materialized
    cfg = {"ops": {"mixture": {"config": {"preset": "llama9"}}}}
    result = dg.materialize(ALL, selection=[token_assets[1]], instance=instance, resources=resources, run_config=cfg, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "llama1" in str(failure.event_specific_data.error)
