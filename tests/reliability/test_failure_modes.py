"""Failure modes found by fault and bad-input probing (issue "Nothing lost, nothing stale, nothing
stuck"); docs/RELIABILITY.md lists each with the test that covers it."""

import multiprocessing as mp
import os
import shutil
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.contract import run_stage
from pipelines.curation.dedup import DedupIndex
from pipelines.curation.stages import DEDUP, curation_stages
from pipelines.ingest import ingest_crawl_file
from pipelines.lake import Lake, atomic_directory, partition_dirname


def _crawl_copy(sample_dir: Path, tmp_path: Path, name: str, source: str | None = None) -> Path:
    crawl = tmp_path / "crawl"
    crawl.mkdir(exist_ok=True)
    src = source or sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[0]
    shutil.copy(sample_dir / "crawl" / src, crawl / name)
    return crawl


def test_catalog_views_and_dedup_work_under_a_lake_dir_with_a_quote(sample_dir, tmp_path):
    lake = Lake(tmp_path / "it's a \"lake\"")
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[:2]
    for key in keys:
        ingest_crawl_file(lake, sample_dir / "crawl", key)
        run_stage(DEDUP, lake, key)  # the second matches against the first in the index under the quoted path
    with lake.writer("raw_crawl", "a", pa.schema([("id", pa.string())])) as w:
        w.write_rows([{"id": "x"}])
        w.commit()
    assert lake.connect().execute("SELECT count(*) FROM raw_crawl WHERE id = 'x'").fetchone()[0] == 1
    lake.write_catalog()
    con = lake.open_catalog()
    assert con.execute("SELECT id FROM raw_crawl WHERE id = 'x'").fetchall() == [("x",)]


def test_a_240_character_crawl_file_name_is_ingested_and_deduplicated(sample_dir, tmp_path):
    name = "x" * 232 + ".warc.gz"
    crawl = _crawl_copy(sample_dir, tmp_path, name)
    lake = Lake(tmp_path / "lake")
    ingest_crawl_file(lake, crawl, name)
    manifest = run_stage(DEDUP, lake, name)
    assert manifest["rows"] > 0 and len(partition_dirname(name)) <= 200


def test_an_empty_partition_does_not_stop_later_dedup(sample_dir, tmp_path):
    crawl = _crawl_copy(sample_dir, tmp_path, "a.warc.gz")
    _crawl_copy(sample_dir, tmp_path, "c.warc.gz", source=sorted(p.name for p in (sample_dir / "crawl").iterdir())[-1])
    (crawl / "b-empty.warc.gz").write_bytes(b"")
    lake = Lake(tmp_path / "lake")
    for key in ("a.warc.gz", "b-empty.warc.gz", "c.warc.gz"):
        ingest_crawl_file(lake, crawl, key)
        run_stage(DEDUP, lake, key)
    assert lake.read_manifest("deduped", "c.warc.gz")["rows"] > 0
    assert DedupIndex(lake.dedup_index_dir()).registry() == {"a.warc.gz": 0, "b-empty.warc.gz": 1, "c.warc.gz": 2}


def test_an_interrupted_directory_swap_is_restored(tmp_path, monkeypatch):
    final = tmp_path / "index" / "partition"
    with atomic_directory(final) as tmp:
        (tmp / "docs.parquet").write_text("v1")
    real_rename = Path.rename

    def killed_after_first_rename(self, target):
        if self.name.endswith(".tmp"):  # the second rename of the swap: the process "dies" here
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_after_first_rename)
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as tmp:
        (tmp / "docs.parquet").write_text("v2")
    monkeypatch.undo()
    assert not final.exists()  # what a reader would see before recovery
    from pipelines.lake import recover_swaps

    assert recover_swaps(final.parent) == ["partition"]
    assert (final / "docs.parquet").read_text() == "v1"


def _rerun_killed_before_the_index_commit(lake: Lake, key: str) -> None:
    def die(self, manifest):  # the partition's new files are written, the manifest not yet replaced
        os._exit(9)

    DedupIndex.commit = die
    run_stage(DEDUP, lake, key)


def _index_files(lake: Lake) -> set[str]:
    root = lake.dedup_index_dir()
    return {p.relative_to(root).as_posix() for kind in ("runs", "docs") for p in (root / kind).glob("*")}


def test_a_kill_inside_the_dedup_index_commit_loses_no_earlier_partition(sample_dir, tmp_path):
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[:2]
    lake = Lake(tmp_path / "lake")
    for key in keys:
        ingest_crawl_file(lake, sample_dir / "crawl", key)
    run_stage(DEDUP, lake, keys[0])
    live = _index_files(lake)
    child = mp.get_context("fork").Process(target=_rerun_killed_before_the_index_commit, args=(lake, keys[0]))
    child.start()
    child.join(120)
    assert child.exitcode == 9
    assert _index_files(lake) > live  # the dead writer's unpublished files
    run_stage(DEDUP, lake, keys[1])
    first_ids = set(pq.read_table(lake.data_path("raw_crawl", keys[0]), columns=["id"]).column("id").to_pylist())
    ledger = pq.read_table(lake.data_path("rejection_ledger", f"dedup/{keys[1]}")).to_pylist()
    assert [r for r in ledger if r["dup_of"] in first_ids]  # duplicates of the first file are still caught
    index = DedupIndex(lake.dedup_index_dir())
    assert index.registry() == {keys[0]: 0, keys[1]: 1}
    manifest = index.manifest()
    assert _index_files(lake) == {r["dir"] for r in manifest["runs"]} | set(manifest["docs"].values())  # leftovers collected


def test_two_writers_of_one_partition_do_not_delete_each_others_files(tmp_path):
    lake = Lake(tmp_path / "lake")
    schema = pa.schema([("id", pa.string())])
    errors, hashes, first_is_writing = [], [], threading.Event()

    def write(tag: str):
        try:
            with lake.writer("raw_crawl", "p", schema) as w:
                for i in range(20):
                    w.write_rows([{"id": f"{tag}{i}"}])
                    first_is_writing.set()
                    time.sleep(0.005)
                hashes.append(w.commit())
        except Exception as exc:  # any failure of either writer fails the test
            errors.append(exc)

    first = threading.Thread(target=write, args=("a",))
    first.start()
    first_is_writing.wait(10)
    second = threading.Thread(target=write, args=("b",))  # starts while the first is mid-write
    second.start()
    first.join()
    second.join()
    assert not errors and len(hashes) == 2
    assert pq.read_table(lake.data_path("raw_crawl", "p")).num_rows == 20


def test_partition_keys_cannot_read_outside_the_crawl_dir(sample_dir, tmp_path):
    crawl = _crawl_copy(sample_dir, tmp_path, "ok.warc.gz")
    outside = tmp_path / "secret.warc.gz"
    shutil.copy(crawl / "ok.warc.gz", outside)
    lake = Lake(tmp_path / "lake")
    for key in ("../secret.warc.gz", str(outside)):
        with pytest.raises(ValueError, match="outside CRAWL_DIR"):
            ingest_crawl_file(lake, crawl, key)


def test_curation_of_every_stage_runs_on_an_empty_partition(tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "empty.warc.gz").write_bytes(b"")
    lake = Lake(tmp_path / "lake")
    ingest_crawl_file(lake, crawl, "empty.warc.gz")
    for stage in curation_stages():
        assert run_stage(stage, lake, "empty.warc.gz")["rows"] == 0


@pytest.mark.parametrize("stage, overrides, field", [
    ("SHARDS", {"val_fraction": 1.5}, "ShardsConfig.val_fraction"),
    ("MIXTURE", {"token_budget": -5}, "MixtureConfig.token_budget"),
    ("MIXTURE", {"max_epochs": 0}, "MixtureConfig.max_epochs"),
    ("TOKENIZER", {"vocab_size": 10}, "TokenizerConfig.vocab_size"),
])
def test_nonsensical_token_configs_fail_before_any_work_naming_the_field(tmp_path, stage, overrides, field):
    from pipelines.tokenize import stages

    lake = Lake(tmp_path / "lake")
    with pytest.raises(ValueError, match=field):
        run_stage(getattr(stages, stage), lake, **overrides)
    assert not lake.root.exists()  # nothing was written


def test_shards_with_an_empty_split_fail_their_blocking_check(token_lake, tmp_path):
    from pipelines.tokenize.stages import SHARDS

    lake = Lake(tmp_path / "copy")
    shutil.copytree(token_lake.root, lake.root)
    manifest = run_stage(SHARDS, lake, val_fraction=1e-9, shard_tokens=4000)
    check = next(c for c in SHARDS.checks if c.name == "shards_valid")
    result = check.evaluate(lake, manifest)
    assert not result.passed and "the validation split is empty" in result.metadata["problems"]


def test_a_bad_training_config_fails_the_run_with_the_field_named(token_lake, tmp_path):
    import dagster as dg

    from orchestration.defs.tokens import token_assets
    from orchestration.defs.training import base_model
    from orchestration.resources import InputsResource, LakeResource

    resources = {"lake": LakeResource(root=str(token_lake.root)), "inputs": InputsResource(crawl_dir="x", sources_dir="x"),
                 "pipes_subprocess_client": dg.PipesSubprocessClient()}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*token_assets, base_model], selection=[base_model], instance=instance, resources=resources,
                                run_config={"ops": {"base_model": {"config": {"preset": "test", "lr": -1.0}}}},
                                raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "PretrainConfig.lr = -1.0: must be > 0" in str(failure.event_specific_data.error)


def test_a_non_warc_file_is_named_as_such_not_truncated(tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "notes.warc.gz").write_bytes(b"these are my notes, not a crawl\n" * 50)
    manifest = ingest_crawl_file(Lake(tmp_path / "lake"), crawl, "notes.warc.gz")
    assert manifest["outcomes"] == {"not_a_warc": 1} and "holds no WARC record" in manifest["errors"][0]


def test_source_files_lose_only_their_bad_lines(tmp_path):
    from pipelines.ingest import ingest_source_dir

    books = tmp_path / "sources" / "books"
    books.mkdir(parents=True)
    (books / "a.jsonl").write_bytes(
        b'{"id": 1, "text": "first book", "title": 7}\n'
        b'{"id": 2, "text": "caf\\u00e9 ok"}\n'
        b'{"id": 3, "text": "caf\xe9 latin-1 byte"}\n'  # one latin-1 byte: this line only
        b'{"id": 1, "text": "another text under a reused id", "url": {"host": "x"}}\n')
    lake = Lake(tmp_path / "lake")
    manifest = ingest_source_dir(lake, tmp_path / "sources", "books")
    assert manifest["rows"] == 3 and manifest["outcomes"] == {"kept": 3, "undecodable_line": 1}
    assert manifest["warnings"] == {"coerced_field": 2, "duplicate_id": 1}
    assert any("a.jsonl:3" in e and "not UTF-8" in e for e in manifest["errors"])
    table = pq.read_table(lake.data_path("source_books"))
    assert len(set(table.column("id").to_pylist())) == 3  # the reused id did not merge two texts
    assert table.column("title").to_pylist()[0] == "7"


def _weights(checkpoint: Path) -> bytes:
    return (checkpoint / "model.safetensors").read_bytes()


def test_retraining_with_new_config_data_or_tokenizer_gives_new_weights_and_true_lineage(token_lake, tmp_path):
    """A leftover resume state used to be resumed by any later run (stale weights under new lineage)."""
    import json

    from pipelines.tokenize import stages as tok
    from pipelines.tokenize.shards import tokenizer_dir
    from pipelines.tokenize.tokenizer import tokenizer_hash
    from training.pretrain import PretrainConfig, PretrainJob, run_pretrain

    lake = Lake(tmp_path / "copy")
    shutil.copytree(token_lake.root, lake.root)
    out = lake.checkpoint_dir("base_model")

    def train(**config):
        job = PretrainJob(shards_dir=str(lake.partition_dir("tokenized_shards")), out_dir=str(out),
                          config=PretrainConfig(preset="test", max_steps=6, checkpoint_every=2, eval_every=3, **config))
        run_pretrain(job, log=lambda m: None)
        return _weights(out), json.loads((out / "lineage.json").read_text())

    first, _ = train(seed=0)
    assert train(seed=0)[0] == first  # the same run again: same weights (deterministic, or resumed)
    reseeded, lineage = train(seed=1)
    assert reseeded != first and lineage["config"]["seed"] == 1
    new_lr, lineage = train(seed=1, lr=1e-2)
    assert new_lr != reseeded and lineage["config"]["lr"] == 1e-2
    run_stage(tok.SHARDS, lake, val_fraction=0.2, shard_tokens=4000, seed=3)  # new data
    new_data, lineage = train(seed=1, lr=1e-2)
    assert new_data != new_lr and lineage["shards_fingerprint"] == lake.read_manifest("tokenized_shards")["content_hash"]
    run_stage(tok.TOKENIZER, lake, vocab_size=700, model_max_length=64)  # a new tokenizer, shards not rebuilt
    _, lineage = train(seed=1, lr=1e-2)
    assert tokenizer_hash(out) == tokenizer_hash(tokenizer_dir(lake.partition_dir("tokenized_shards")))
    assert tokenizer_hash(out) != tokenizer_hash(lake.partition_dir("tokenizer"))  # the model kept its shards' tokenizer


def test_bad_chat_rows_are_skipped_with_file_line_and_reason(tmp_path):
    import json

    from pipelines.contract import Inputs
    from training.datasets import SFT_DATASET

    chat = tmp_path / "chat"
    chat.mkdir()
    good = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    rows = [good,
            {"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]},
            {"messages": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "then"}]}]
    (chat / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lake = Lake(tmp_path / "lake")
    manifest = run_stage(SFT_DATASET, lake, inputs=Inputs(tmp_path, tmp_path, chat))
    assert manifest["conversations"] == 1 and manifest["invalid_rows"] == 3
    errors = "\n".join(manifest["errors"])
    assert "sft.jsonl:2: messages[0] needs `role`" in errors and "sft.jsonl:3: messages[1].role is 'bot'" in errors
    assert "sft.jsonl:4: turns must alternate" in errors


@pytest.mark.parametrize("row, message", [
    ({"question": "q", "choices": ["a", "b"], "gold": 2}, "`gold` must be the index"),
    ({"question": "q", "choices": "ab", "gold": 0}, "`choices` must be a list"),
    ({"prompt": "p", "harmful": "false"}, "`harmful` must be true or false"),
])
def test_eval_rows_that_would_be_scored_wrongly_are_refused(tmp_path, row, message):
    import json

    from evaluation.tasks import load_tasks

    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=f"tasks.jsonl:2: {message}"):
        load_tasks(path)


def test_an_error_inside_the_training_process_reaches_the_run_failure(token_lake, tmp_path):
    import dagster as dg

    from orchestration.defs.tokens import token_assets
    from orchestration.defs.training import base_model
    from orchestration.resources import InputsResource, LakeResource

    lake = Lake(tmp_path / "copy")
    shutil.copytree(token_lake.root, lake.root)
    next((lake.partition_dir("tokenized_shards") / "train").glob("*.ds")).unlink()  # a shard lost under the job
    resources = {"lake": LakeResource(root=str(lake.root)), "inputs": InputsResource(crawl_dir="x", sources_dir="x"),
                 "pipes_subprocess_client": dg.PipesSubprocessClient()}
    with dg.instance_for_test() as instance:
        result = dg.materialize([*token_assets, base_model], selection=[base_model], instance=instance, resources=resources,
                                run_config={"ops": {"base_model": {"config": {"preset": "test"}}}}, raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error) + str(failure.event_specific_data.user_failure_data)
    assert "base_model training failed: FileNotFoundError" in message


def test_a_killed_runs_pool_slot_is_freed(tmp_path):
    import subprocess

    import dagster as dg
    import yaml
    from dagster._core.events import DagsterEvent  # building the event a run worker writes at start

    from orchestration.defs.sensors import dead_run_reaper

    settings = yaml.safe_load(Path("dagster.yaml").read_text())
    assert settings["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    with dg.instance_for_test(overrides={"concurrency": settings["concurrency"]}) as instance:
        @dg.asset(pool="training")
        def model():
            ...

        run = instance.create_run_for_job(dg.Definitions(assets=[model]).resolve_implicit_global_asset_job_def())
        worker = subprocess.Popen(["true"])  # the run's process, then killed (here: exited)
        worker.wait()
        instance.report_dagster_event(DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value,
                                                   job_name=run.job_name, pid=worker.pid), run.run_id)
        instance.event_log_storage.set_concurrency_slots("training", 1)
        instance.event_log_storage.claim_concurrency_slot("training", run.run_id, "model")
        assert instance.event_log_storage.get_concurrency_info("training").claimed_slots  # the slot a later run waits for
        dead_run_reaper(dg.build_sensor_context(instance=instance))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("training").claimed_slots


BOMB_INGEST = """
import resource, sys
from pathlib import Path
from pipelines.ingest import CrawlIngestConfig, ingest_crawl_file
from pipelines.lake import Lake
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = ingest_crawl_file(Lake(sys.argv[1]), Path(sys.argv[2]).parent, Path(sys.argv[2]).name, config=CrawlIngestConfig(max_record_mb=20))
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(growth, m["rows"], sorted(m["outcomes"]))
"""


@pytest.mark.parametrize("kind", ["http", "member", "file"])
def test_compression_bombs_stay_within_bounded_memory(tmp_path, kind):
    import subprocess
    import sys

    from pipelines.sample.bombs import write_bomb

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    bomb = write_bomb(crawl / f"{kind}.warc.gz", kind, inflated_bytes=1 << 30)  # 1 GiB inflated
    assert bomb.stat().st_size < 4 << 20
    out = subprocess.run([sys.executable, "-c", BOMB_INGEST, str(tmp_path / "lake"), str(bomb)], capture_output=True,
                         text=True, timeout=300, check=True).stdout.split(" ", 2)
    growth_mb, rows, outcomes = float(out[0]), int(out[1]), out[2]
    assert growth_mb < 200, f"{kind} bomb grew RSS by {growth_mb:.0f} MB"
    # the pages around a bomb are kept; the bomb itself is an outcome, not a document
    expected = {"http": (1, "too_large"), "member": (2, "truncated"), "file": (0, "not_a_warc")}[kind]
    assert rows == expected[0] and expected[1] in outcomes


def _sensor_tick(instance, crawl: Path, cursor=None):
    import dagster as dg

    from orchestration.defs.sensors import crawl_file_sensor
    from orchestration.resources import InputsResource

    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"inputs": InputsResource(crawl_dir=str(crawl), sources_dir=str(crawl))})
    result = crawl_file_sensor(ctx)
    if isinstance(result, dg.SensorResult):
        for req in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result, ctx.cursor


def _settle(path: Path, seconds: int = 3600):
    import os

    t = time.time() - seconds
    os.utime(path, (t, t))


def test_a_crawl_file_replaced_or_grown_after_registration_is_requested_again(sample_dir, tmp_path):
    import dagster as dg

    files = sorted(p for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    target = crawl / "a.warc.gz"
    target.write_bytes(files[0].read_bytes()[:5000])  # a copy that stalled mid-write for longer than a tick
    _settle(target)
    with dg.instance_for_test() as instance:
        result, cursor = _sensor_tick(instance, crawl)
        assert [r.run_key for r in result.run_requests] == ["ingest:a.warc.gz"]
        result, cursor = _sensor_tick(instance, crawl, cursor)
        assert isinstance(result, dg.SkipReason)  # nothing changed
        target.write_bytes(files[0].read_bytes())  # the copy resumed and finished
        _settle(target, 1800)
        result, cursor = _sensor_tick(instance, crawl, cursor)
        assert [r.partition_key for r in result.run_requests] == ["a.warc.gz"]
        assert result.run_requests[0].run_key.startswith("reingest:a.warc.gz:")
        shutil.copy(files[1], target)  # replaced under the same name
        _settle(target, 600)
        result, cursor = _sensor_tick(instance, crawl, cursor)
        assert [r.partition_key for r in result.run_requests] == ["a.warc.gz"]


def test_hidden_crawl_files_are_reported_not_ignored_silently(sample_dir, tmp_path):
    import json

    import dagster as dg

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    shutil.copy(sorted((sample_dir / "crawl").iterdir())[0], crawl / ".hidden.warc.gz")
    with dg.instance_for_test() as instance:
        result, cursor = _sensor_tick(instance, crawl)
        assert "1 hidden file(s) not ingested: ['.hidden.warc.gz']" in result.skip_message  # shown in the tick history
        assert json.loads(cursor)["hidden"] == [".hidden.warc.gz"]  # the warning is logged once, not every tick


def test_documents_that_pointed_at_vanished_survivors_are_repaired(sample_dir, tmp_path):
    import dagster as dg

    from orchestration.defs.sensors import dedup_repair_sensor
    from orchestration.resources import LakeResource

    files = sorted(p for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    shutil.copy(files[0], crawl / "a.warc.gz")
    shutil.copy(files[0], crawl / "b.warc.gz")  # every page of b duplicates a page of a
    lake = Lake(tmp_path / "lake")
    for key in ("a.warc.gz", "b.warc.gz"):
        ingest_crawl_file(lake, crawl, key)
        run_stage(DEDUP, lake, key)
    assert lake.read_manifest("deduped", "b.warc.gz")["rows"] == 0
    shutil.copy(files[1], crawl / "a.warc.gz")  # a is replaced: b's survivors are gone
    ingest_crawl_file(lake, crawl, "a.warc.gz")
    assert run_stage(DEDUP, lake, "a.warc.gz")["repair_partitions"] == ["b.warc.gz"]
    with dg.instance_for_test() as instance:
        requests = dedup_repair_sensor(dg.build_sensor_context(instance=instance, resources={"lake": LakeResource(root=str(lake.root))}))
    assert [r.partition_key for r in requests] == ["b.warc.gz"]
    assert run_stage(DEDUP, lake, "b.warc.gz")["rows"] > 0  # the re-run keeps b's pages that have no survivor left
