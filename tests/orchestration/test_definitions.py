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
