import dagster as dg

from orchestration.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_is_described_grouped_and_versioned():
    for spec in defs.resolve_all_asset_specs():
        assert spec.description, spec.key
        assert spec.group_name and spec.group_name != "default", spec.key
        assert spec.code_version, spec.key
        assert spec.kinds and spec.owners, spec.key


def test_sensor_and_schedules_run_by_default():
    assert defs.resolve_sensor_def("crawl_file_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    for name in ("crawl_refresh_schedule", "sources_refresh_schedule"):
        assert defs.resolve_schedule_def(name).default_status == dg.DefaultScheduleStatus.RUNNING


def test_metadata_floats_are_rounded_inside_json_values():
    from orchestration.metadata import manifest_metadata

    meta = manifest_metadata({"weights": {"arxiv": 0.024999999999999994, "web": 0.8199999999999998}, "loss": [1.0000000000000002]})
    assert meta["weights"].value == {"arxiv": 0.025, "web": 0.82} and meta["loss"].value == [1.0]
