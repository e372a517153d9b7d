"""OpenLineage events for every materialization: START, then COMPLETE (or FAIL), per asset and partition.

Lineage tools (Marquez, DataHub, OpenMetadata, Atlan...) read this standard instead of our
manifests. By default events are appended, one JSON object per line, to
`lake/openlineage/events.jsonl` (file transport: works offline, and the file is the record).
Setting the client's own environment (`OPENLINEAGE_URL`, or `OPENLINEAGE__TRANSPORT__TYPE` and
friends) sends them where the user points instead; `OPENLINEAGE_DISABLED=true` turns them off.

Datasets follow OpenLineage's naming: namespace `file`, name = the absolute directory the lake
keeps the asset (or partition) in; for a lake on object storage `s3://<bucket>` and the key prefix. The output carries its content hash as
`version`, and the number of rows when the stage counts them.
"""

from __future__ import annotations

import os
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from pipelines.lake import Lake, partition_dirname

PRODUCER = "https://github.com/llm-foundry/llm-foundry"
JOB_NAMESPACE = "llm-foundry"
_ENV_TRANSPORT = ("OPENLINEAGE_URL", "OPENLINEAGE__TRANSPORT__TYPE", "OPENLINEAGE_CONFIG")


@lru_cache(maxsize=8)
def _client(log_path: str, from_env: bool):
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    if from_env:
        return OpenLineageClient()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=log_path, append=True)))


def client_for(lake: Lake):
    return _client(str(lake.openlineage_log()), any(os.environ.get(k) for k in _ENV_TRANSPORT))


def dataset(lake: Lake, asset: str, partition: str | None) -> tuple[str, str]:
    """(namespace, name) of the asset's data for this partition, in OpenLineage's naming: `file` and the
    directory (the asset's own directory for a partitioned asset read as a whole), or `s3://bucket` and
    the key prefix for a lake on object storage."""
    if lake.store and lake.has_manifest(asset, partition):
        bucket, _, prefix = lake.store.key(asset, partition_dirname(partition)).partition("/")
        return f"s3://{bucket}", prefix
    return "file", _local_dir(lake, asset, partition)


def _local_dir(lake: Lake, asset: str, partition: str | None) -> str:
    if partition is not None and lake.partition_dir(asset, partition).exists():
        return str(lake.partition_dir(asset, partition))
    model_dir = lake.model_dir(asset)
    return str(model_dir if model_dir.exists() else lake.root / asset)


def run_id_for(parent_run_id: str, asset: str, partition: str | None, attempt: int = 0) -> str:
    """One OpenLineage run per attempt at an asset partition in an orchestrator run; START and its end share it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{parent_run_id}/{asset}/{partition or ''}/{attempt}"))


def _event(state: str, run_id: str, asset: str, *, inputs=(), outputs=(), run_facets=None, job_description: str = ""):
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import documentation_job, job_type_job

    job_facets = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DAGSTER", jobType="ASSET")}
    if job_description:
        job_facets["documentation"] = documentation_job.DocumentationJobFacet(description=job_description)
    return RunEvent(eventType=getattr(RunState, state), eventTime=datetime.now(UTC).isoformat(),
                    run=Run(runId=run_id, facets=run_facets or {}), job=Job(namespace=JOB_NAMESPACE, name=asset, facets=job_facets),
                    inputs=list(inputs), outputs=list(outputs), producer=PRODUCER)


@contextmanager
def lineage_run(lake: Lake, asset: str, partition: str | None, upstream: tuple[str, ...], *, parent_run_id: str,
                engine_version: str, attempt: int = 0, description: str = "") -> Iterator[dict]:
    """Emit START now, then COMPLETE with the manifest the caller puts in the yielded dict, or FAIL on an exception."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        error_message_run,
        output_statistics_output_dataset,
        processing_engine_run,
    )

    client = client_for(lake)
    run_id = run_id_for(parent_run_id, asset, partition, attempt)
    engine = {"processing_engine": processing_engine_run.ProcessingEngineRunFacet(version=engine_version, name="dagster")}
    inputs = [InputDataset(*dataset(lake, name, partition)) for name in upstream]
    client.emit(_event("START", run_id, asset, inputs=inputs, run_facets=engine, job_description=description))
    result: dict = {}
    try:
        yield result
    except BaseException as exc:
        error = error_message_run.ErrorMessageRunFacet(message=str(exc) or type(exc).__name__, programmingLanguage="python",
                                                       stackTrace="".join(traceback.format_exception(exc)))
        client.emit(_event("FAIL", run_id, asset, inputs=inputs, run_facets={**engine, "errorMessage": error}))
        raise
    manifest = result.get("manifest") or {}
    facets = {}
    if manifest.get("content_hash"):
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(manifest["content_hash"]))
    rows = manifest.get("rows")
    stats = {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)} \
        if isinstance(rows, int) else {}
    output = OutputDataset(*dataset(lake, asset, partition), facets=facets, outputFacets=stats)
    source = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    if source.get("file"):  # a stage that read a file outside the lake (a crawl file) names it and its hash
        version = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=source["xxh3_128"])} \
            if source.get("xxh3_128") else {}
        inputs = [*inputs, InputDataset(namespace="file", name=source["file"], facets=version)]
    client.emit(_event("COMPLETE", run_id, asset, inputs=inputs, outputs=[output], run_facets=engine))
