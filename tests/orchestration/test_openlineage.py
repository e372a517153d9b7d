"""OpenLineage events for materializations: START then COMPLETE (or FAIL) per asset and partition, file transport."""

import json
import uuid

import dagster as dg

from orchestration.defs.curation import curation_assets
from orchestration.defs.ingest import raw_crawl_defs
from orchestration.partitions import crawl_files
from pipelines.lake import file_hash


def _events(lake):
    return [json.loads(line) for line in lake.openlineage_log().read_text().splitlines()]


def test_every_materialization_emits_start_and_complete_with_versions_and_inputs(sample_dir, resources):
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[0]
    lake = resources["lake"].lake
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        result = dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=key, instance=instance, resources=resources)
    assert result.success
    events = _events(lake)
    by_job = {}
    for e in events:
        assert e["producer"] and e["schemaURL"].startswith("https://openlineage.io/spec/") and uuid.UUID(e["run"]["runId"])
        by_job.setdefault(e["job"]["name"], []).append(e)
    assert set(by_job) == {"raw_crawl", "deduped", "language_id", "pii_tags", "toxicity_tags", "quality_tags", "curated_web"}
    for job, job_events in by_job.items():
        assert [e["eventType"] for e in job_events] == ["START", "COMPLETE"], job
        assert len({e["run"]["runId"] for e in job_events}) == 1
        complete = job_events[1]
        (output,) = complete["outputs"]
        manifest = lake.read_manifest(job, key)
        assert output["namespace"] == "file" and output["name"] == str(lake.partition_dir(job, key))
        assert output["facets"]["version"]["datasetVersion"] == manifest["content_hash"]
        assert complete["run"]["facets"]["processing_engine"]["name"] == "dagster"
    crawl_input = by_job["raw_crawl"][1]["inputs"][0]
    assert crawl_input["name"] == str(sample_dir / "crawl" / key)
    assert crawl_input["facets"]["version"]["datasetVersion"] == file_hash(sample_dir / "crawl" / key)
    curated_inputs = {i["name"] for i in by_job["curated_web"][1]["inputs"]}
    assert str(lake.partition_dir("deduped", key)) in curated_inputs and str(lake.partition_dir("pii_tags", key)) in curated_inputs
    assert by_job["curated_web"][1]["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == lake.read_manifest(
        "curated_web", key)["rows"]


def test_a_failed_materialization_emits_fail_with_the_error(sample_dir, resources):
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[0]
    with dg.instance_for_test() as instance:  # deduped without its raw_crawl partition: the stage fails
        instance.add_dynamic_partitions(crawl_files.name, [key])
        result = dg.materialize([*raw_crawl_defs, *curation_assets], selection=["deduped"], partition_key=key,
                                instance=instance, resources=resources, raise_on_error=False)
    assert not result.success
    (start, fail) = _events(resources["lake"].lake)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL") and start["run"]["runId"] == fail["run"]["runId"]
    assert start["job"]["name"] == "deduped" and "raw_crawl" in fail["run"]["facets"]["errorMessage"]["message"]
    assert "Traceback" in fail["run"]["facets"]["errorMessage"]["stackTrace"]
