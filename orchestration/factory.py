"""One factory from the library's stage contract to Dagster: config class, asset, asset checks.

- `dagster_config(cls)` mirrors a library config dataclass as a `dg.Config` (same fields,
  defaults and docs), so the launchpad shows every parameter and no default is written twice;
- `stage_assets(stage, ...)` builds the asset that runs the stage and one `@asset_check` per
  check of the stage, each judging the manifest the asset wrote;
- `to_library(config, cls)` turns the launchpad's values back into the frozen dataclass.
"""


import contextlib
import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Optional

import dagster as dg
import pydantic
import xxhash

from orchestration.metadata import manifest_metadata, plain_metadata
from orchestration.resources import LakeResource
from pipelines.contract import Stage, StageContext, config_fields, config_from_dict, config_to_dict, field_doc
from pipelines.engine import run_partitions
from pipelines.openlineage import lineage_run

OWNERS = ["team:data-platform"]
CODE_VERSION = "1"


def _annotation(tp: Any) -> Any:
    if dataclasses.is_dataclass(tp):
        return dagster_config(tp)
    origin = typing.get_origin(tp)
    if origin is tuple:
        return list[typing.get_args(tp)[0]]
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and type(None) in typing.get_args(tp):
            return Optional[_annotation(inner[0])]
    return tp


def _default(f: dataclasses.Field, tp: Any) -> pydantic.fields.FieldInfo:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if dataclasses.is_dataclass(tp):  # a nested section: its default is the nested config's defaults
        return pydantic.Field(default=dagster_config(tp)(**config_to_dict(value)), description=field_doc(f))
    # tuples become lists; pydantic copies mutable defaults per instance, and Dagster shows them in the schema
    return pydantic.Field(default=config_to_dict(value), description=field_doc(f))


@functools.cache
def dagster_config(cls: type) -> type[dg.Config]:
    """A `dg.Config` with the fields, defaults and docs of the config dataclass `cls`."""
    fields = {f.name: (_annotation(tp), _default(f, tp)) for f, tp in config_fields(cls)}
    return pydantic.create_model(cls.__name__, __base__=dg.Config, __doc__=cls.__doc__ or "", **fields)


def to_library(config: dg.Config, cls: type) -> Any:
    """The launchpad's values as the library's frozen config; a bad value becomes a clear run failure."""
    try:
        return config_from_dict(cls, config.model_dump())
    except (TypeError, ValueError) as exc:
        raise dg.Failure(f"invalid {cls.__name__}: {exc}") from exc


def _check(stage: Stage, check, asset: dg.AssetsDefinition, partitions_def) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=check.name, description=check.description, blocking=check.blocking,
                    partitions_def=partitions_def)
    def run_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        severity = dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN
        partitions = context.partition_keys if partitions_def is not None else [None]
        results = {p: check.evaluate(lake.lake, lake.lake.read_manifest(stage.name, p)) for p in partitions}
        if len(results) == 1:
            (result,) = results.values()
            return dg.AssetCheckResult(passed=result.passed, metadata=plain_metadata(result.metadata),
                                       description=result.message or None, severity=severity)
        failed = {p: r for p, r in results.items() if not r.passed}  # a range run: one verdict, naming what failed
        return dg.AssetCheckResult(passed=not failed, severity=severity,
                                   metadata={"partitions": len(results), "failed_partitions": len(failed),
                                             "failures": dg.MetadataValue.json({p: r.message or str(r.metadata)
                                                                                for p, r in failed.items()})},
                                   description="; ".join(f"{p}: {r.message or 'failed'}" for p, r in failed.items()) or None)

    return run_check


def _partitions_metadata(manifests: list[dict]) -> dict:
    """One run over a partition range: a row per partition (its own manifest has the details)."""
    schema = dg.TableSchema(columns=[dg.TableColumn("partition", "string"), dg.TableColumn("rows_in", "int"),
                                     dg.TableColumn("rows", "int"), dg.TableColumn("seconds", "float")])
    rows = [dg.TableRecord({"partition": m["partition"], "rows_in": int(m.get("rows_in", m["rows"])), "rows": int(m["rows"]),
                            "seconds": float(m["seconds"])}) for m in manifests]
    return {"partitions": dg.MetadataValue.int(len(manifests)), "rows": dg.MetadataValue.int(sum(m["rows"] for m in manifests)),
            "by_partition": dg.MetadataValue.table(rows, schema=schema)}


def _range_version(manifests: list[dict]) -> str:
    return xxhash.xxh3_128_hexdigest("\n".join(m["content_hash"] for m in manifests).encode())


def stage_assets(stage: Stage, *, group: str, deps: list = (), partitions_def=None, kinds: set[str] = frozenset({"python"}),
                 metadata: Callable[[dict], dict] = manifest_metadata, write_catalog: bool = False, **asset_kwargs) -> list:
    """The asset that runs `stage` (and writes its manifest), then one asset check per stage check.

    A partitioned stage runs over every partition of its run (a backfill runs ranges of partitions,
    `partitions.crawl_backfill_policy`) on the `engine` resource: a process pool here, or a Ray cluster.
    """
    config_cls = dagster_config(stage.config)
    needs_partition = partitions_def is not None
    resource_keys = {"lake"} | ({"inputs"} if stage.reads_inputs else set()) | ({"engine"} if needs_partition else set())

    @dg.asset(name=stage.name, description=stage.description, deps=list(deps), partitions_def=partitions_def, group_name=group,
              kinds=set(kinds), owners=OWNERS, code_version=CODE_VERSION, tags={"stage": group},
              required_resource_keys=resource_keys, **asset_kwargs)
    def run_stage(context: dg.AssetExecutionContext, config: config_cls) -> dg.MaterializeResult:
        partitions = context.partition_keys if needs_partition else [None]
        lake: LakeResource = context.resources.lake
        inputs = context.resources.inputs.inputs if stage.reads_inputs else None
        for name in lake.lake.recover():
            context.log.warning(f"restored {name}: a killed run had left its directory swap half done")
        ctxs = [StageContext(lake.lake, p, inputs, context.log.info, context.log.warning) for p in partitions]
        library_config = to_library(config, stage.config)
        with contextlib.ExitStack() as stack:  # one OpenLineage run per partition
            lineage = [stack.enter_context(lineage_run(lake.lake, stage.name, p, stage.inputs, parent_run_id=context.run_id,
                                                       attempt=context.retry_number, engine_version=dg.__version__,
                                                       description=stage.description)) for p in partitions]
            if needs_partition:
                manifests = run_partitions(stage, ctxs, library_config, context.resources.engine.engine)
            else:
                manifests = [stage.run(ctxs[0], library_config)]
            for record, manifest in zip(lineage, manifests, strict=True):
                record["manifest"] = manifest
        if write_catalog:
            lake.lake.write_catalog()
        if len(manifests) == 1:
            return dg.MaterializeResult(metadata=metadata(manifests[0]), data_version=dg.DataVersion(manifests[0]["content_hash"]))
        return dg.MaterializeResult(metadata=_partitions_metadata(manifests), data_version=dg.DataVersion(_range_version(manifests)))

    return [run_stage, *(_check(stage, c, run_stage, partitions_def) for c in stage.checks)]


def assets_only(definitions: list) -> list[dg.AssetsDefinition]:
    """The assets of a factory output, without their checks (for selections)."""
    return [d for d in definitions if not isinstance(d, dg.AssetChecksDefinition)]
