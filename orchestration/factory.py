"""One factory from the library's stage contract to Dagster: config class, asset, asset checks.

- `dagster_config(cls)` mirrors a library config dataclass as a `dg.Config` (same fields,
  defaults and docs), so the launchpad shows every parameter and no default is written twice;
- `stage_assets(stage, ...)` builds the asset that runs the stage and one `@asset_check` per
  check of the stage, each judging the manifest the asset wrote;
- `to_library(config, cls)` turns the launchpad's values back into the frozen dataclass.
"""


import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Optional

import dagster as dg
import pydantic

from orchestration.metadata import manifest_metadata, plain_metadata
from orchestration.resources import LakeResource
from pipelines.contract import Stage, StageContext, config_fields, config_from_dict, config_to_dict, field_doc
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
        partition = context.partition_key if partitions_def is not None else None
        result = check.evaluate(lake.lake, lake.lake.read_manifest(stage.name, partition))
        return dg.AssetCheckResult(passed=result.passed, metadata=plain_metadata(result.metadata),
                                   description=result.message or None,
                                   severity=dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN)

    return run_check


def stage_assets(stage: Stage, *, group: str, deps: list = (), partitions_def=None, kinds: set[str] = frozenset({"python"}),
                 metadata: Callable[[dict], dict] = manifest_metadata, write_catalog: bool = False, **asset_kwargs) -> list:
    """The asset that runs `stage` (and writes its manifest), then one asset check per stage check."""
    config_cls = dagster_config(stage.config)
    needs_partition = partitions_def is not None

    @dg.asset(name=stage.name, description=stage.description, deps=list(deps), partitions_def=partitions_def, group_name=group,
              kinds=set(kinds), owners=OWNERS, code_version=CODE_VERSION, tags={"stage": group},
              required_resource_keys={"lake", "inputs"} if stage.reads_inputs else {"lake"}, **asset_kwargs)
    def run_stage(context: dg.AssetExecutionContext, config: config_cls) -> dg.MaterializeResult:
        partition = context.partition_key if needs_partition else None
        lake: LakeResource = context.resources.lake
        inputs = context.resources.inputs.inputs if stage.reads_inputs else None
        for name in lake.lake.recover():
            context.log.warning(f"restored {name}: a killed run had left its directory swap half done")
        ctx = StageContext(lake.lake, partition, inputs, context.log.info, context.log.warning)
        with lineage_run(lake.lake, stage.name, partition, stage.inputs, parent_run_id=context.run_id, attempt=context.retry_number,
                         engine_version=dg.__version__, description=stage.description) as lineage:
            manifest = lineage["manifest"] = stage.run(ctx, to_library(config, stage.config))
        if write_catalog:
            lake.lake.write_catalog()
        return dg.MaterializeResult(metadata=metadata(manifest), data_version=dg.DataVersion(manifest["content_hash"]))

    return [run_stage, *(_check(stage, c, run_stage, partitions_def) for c in stage.checks)]


def assets_only(definitions: list) -> list[dg.AssetsDefinition]:
    """The assets of a factory output, without their checks (for selections)."""
    return [d for d in definitions if not isinstance(d, dg.AssetChecksDefinition)]
