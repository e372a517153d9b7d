"""The Dagster instance on PostgreSQL, as the production profile runs it: a real server on 127.0.0.1
started here, storage configured by deploy/production/dagster.yaml's own `storage` and
`concurrency` blocks, and crawl partitions run by concurrent `dagster job execute` processes."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest
import yaml

from serving.process import free_port

PRODUCTION = Path(__file__).resolve().parents[2] / "deploy" / "production" / "dagster.yaml"


def _postgres_bin() -> Path:
    """Debian's PostgreSQL server binaries, installed with apt-get when missing (as CI's image may be)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("PostgreSQL is not installed and this user cannot apt-get it: apt-get install postgresql")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"], check=True, capture_output=True,
                       env=env, timeout=900)
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent


@pytest.fixture(scope="module")
def postgres():
    """A throwaway cluster (user `dagster`, password auth over TCP, database `dagster`); yields its settings."""
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="llm-foundry-pg-"))  # not under pytest's root-only tmp: the server user must reach it
    as_server = []
    if os.geteuid() == 0:  # initdb refuses root; Debian's package made the `postgres` user
        shutil.chown(root, "postgres")
        as_server = ["runuser", "-u", "postgres", "--"]
    password, port = secrets.token_hex(12), free_port()
    (root / "pw").write_text(password)
    shutil.chown(root / "pw", "postgres") if as_server else None

    def server(*cmd, **kw):
        return subprocess.run([*as_server, str(bin_dir / cmd[0]), *cmd[1:]], check=True, capture_output=True, text=True, **kw)

    server("initdb", "-D", str(root / "data"), "-U", "dagster", f"--pwfile={root / 'pw'}", "-A", "scram-sha-256", timeout=120)
    server("pg_ctl", "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-t", "120",
           "-o", f"-h 127.0.0.1 -p {port} -k {root / 'data'} -c max_connections=200", "start", timeout=180)
    try:
        env = dict(os.environ, PGPASSWORD=password)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"], check=True,
                       env=env, timeout=60)
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": "dagster",
               "DAGSTER_PG_PASSWORD": password}
    finally:
        server("pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "stop", timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _production_home(home: Path) -> Path:
    """DAGSTER_HOME whose dagster.yaml holds the production profile's storage and pool settings verbatim
    (its run launcher and log manager need a cluster and a bucket, so they stay out)."""
    profile = yaml.safe_load(PRODUCTION.read_text())
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": profile["storage"], "concurrency": profile["concurrency"],
                                                      "telemetry": {"enabled": False}}))
    return home


def test_concurrent_partition_runs_share_one_postgres_instance(postgres, sample_dir, tmp_path, monkeypatch):
    home = _production_home(tmp_path / "home")
    for name, value in {**postgres, "DAGSTER_HOME": str(home), "LAKE_DIR": str(tmp_path / "lake"),
                        "CRAWL_DIR": str(sample_dir / "crawl"), "SOURCES_DIR": str(sample_dir / "sources")}.items():
        monkeypatch.setenv(name, value)
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir())[:3]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": {"in_process": {}}}}))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("crawl_files", keys)
    # the operator's set-up step (docs/PRODUCTION.md): Dagster creates a pool's row on first use, and runs that
    # start together on a fresh Postgres instance race to insert it (a unique-key violation fails one of them)
    for pool in ("dedup_index", "training"):
        subprocess.run([sys.executable, "-m", "dagster", "instance", "concurrency", "set", pool, "1"], check=True,
                       capture_output=True, timeout=120)
    procs = [subprocess.Popen([sys.executable, "-m", "dagster", "job", "execute", "-m", "orchestration.definitions",
                               "-j", "crawl_partition_job", "-c", str(config), "--tags", json.dumps({"dagster/partition": key})],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for key in keys]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for key, proc, out in zip(keys, procs, outputs):
        assert proc.returncode == 0, f"{key}:\n{out[-3000:]}"
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == keys
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        windows = []
        for run in runs:
            steps = {}
            for record in instance.get_records_for_run(run.run_id).records:
                event = record.event_log_entry.dagster_event
                if event and event.step_key == "deduped" and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                    steps[event.event_type_value] = record.event_log_entry.timestamp
            windows.append((steps["STEP_START"], steps["STEP_SUCCESS"]))
        spans = sorted((r.start_time, r.end_time) for r in instance.get_run_records())
        assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # the runs did overlap
        for key in keys:
            materialized = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("curated_web"),
                                                                                 asset_partitions=[key]), limit=1)
            assert materialized.records, key
    windows.sort()
    assert all(later[0] >= earlier[1] for earlier, later in zip(windows, windows[1:]))  # the dedup_index pool: one at a time
