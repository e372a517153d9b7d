import dagster as dg
import pytest

from orchestration.partitions import crawl_files
from tests.orchestration.crawl_runs import CRAWL_ASSETS, crawl_keys


def _materialize(instance, key, resources, run_config=None, raise_on_error=True):
    return dg.materialize(CRAWL_ASSETS, partition_key=key, instance=instance, resources=resources, run_config=run_config,
                          raise_on_error=raise_on_error)


def _mat_count(instance, asset: str, key):
    return len(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]),
                                               limit=100).records)


def test_curation_chain_materializes_with_passing_checks_and_metadata(sample_dir, resources):
    key = crawl_keys(sample_dir)[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        result = _materialize(instance, key, resources)
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"ingest_lost_no_readable_pages": True, "no_exact_duplicates": True, "languages_detected": True,
                          "no_pii_left": True,
                          "drop_rate_within_bounds": True, "kept_languages_not_empty": True,
                          # de/fr/es, kept by default, have no model but have word lists
                          "kept_languages_screened_for_toxicity": True}
        meta = result.asset_materializations_for_node("curated_web")[0].metadata
        assert meta["documents_out"].value < meta["documents_in"].value
        reasons = {r.data["reason"] for r in meta["drop_reasons"].records}
        assert any(r.startswith(("gopher", "fineweb", "c4")) for r in reasons) and "language:not_kept" in reasons
        assert {r.data["languages_kept"] for r in meta["languages_kept"].records} <= {"en", "de", "fr", "es"}
        lang_meta = result.asset_materializations_for_node("language_id")[0].metadata
        assert len(lang_meta["languages"].records) >= 4
        manifest = resources["lake"].lake.read_manifest("curated_web", key)  # the complete config it ran with
        assert manifest["config"]["toxicity_tags"]["max_toxic_fraction"] == 0.5
        assert manifest["config"]["quality_tags"]["min_words"] == 50 and manifest["config"]["max_drop_rate"] == 0.95


def test_adding_a_partition_reprocesses_only_that_partition(sample_dir, resources, tmp_path):
    keys = crawl_keys(sample_dir)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, keys[:2])
        for key in keys[:2]:
            assert _materialize(instance, key, resources).success
        lake = resources["lake"].lake
        before = {k: lake.read_manifest("deduped", k)["content_hash"] for k in keys[:2]}
        instance.add_dynamic_partitions(crawl_files.name, keys[2:])
        assert _materialize(instance, keys[2], resources).success
        for key in keys[:2]:
            assert _mat_count(instance, "curated_web", key) == 1  # old partitions were not recomputed
            assert lake.read_manifest("deduped", key)["content_hash"] == before[key]
        con = lake.connect()
        cross = con.execute(f"""
            SELECT count(*) FROM rejection_ledger l JOIN raw_crawl r ON l.dup_of = r.id
            WHERE l.stage = 'dedup' AND l.partition = '{keys[2]}' AND r.origin_file != '{keys[2]}'""").fetchone()[0]
        assert cross > 0  # duplicates of documents from earlier files were caught


def test_filtering_warns_while_data_loss_fails_the_run(sample_dir, resources):
    key = crawl_keys(sample_dir)[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        cfg = {"ops": {"curated_web": {"config": {"max_drop_rate": 0.01}}}}  # more filtering than expected: a warning
        result = _materialize(instance, key, resources, run_config=cfg, raise_on_error=False)
        evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert result.success and evals["drop_rate_within_bounds"].passed is False
        assert evals["drop_rate_within_bounds"].severity == dg.AssetCheckSeverity.WARN
        cfg = {"ops": {"raw_crawl": {"config": {"max_lost_share": 0.0}}}}  # the file has a corrupt record: data loss
        result = _materialize(instance, key, resources, run_config=cfg, raise_on_error=False)
        evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not result.success and evals["ingest_lost_no_readable_pages"].severity == dg.AssetCheckSeverity.ERROR
        assert not result.asset_materializations_for_node("deduped")  # nothing downstream of lost data ran


def test_unknown_quality_threshold_names_the_valid_ones(sample_dir, resources):
    key = crawl_keys(sample_dir)[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        cfg = {"ops": {"curated_web": {"config": {"quality_tags": {"min_wrds": 10}}}}}
        with pytest.raises(dg.DagsterInvalidConfigError, match="min_wrds") as err:
            _materialize(instance, key, resources, run_config=cfg, raise_on_error=False)
        assert "min_words" in str(err.value)
