"""Training entry point: `python -m training.cli {pretrain,sft,dpo,reward,rl} --config job.json`.

Run by the Dagster assets through dagster-pipes (logs and metrics stream to the UI, the
materialization is reported from here, cancelling the run stops this process), by hand,
or under `torchrun --nproc_per_node=N` for DDP (rank 0 reports and writes checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

from pipelines.contract import config_from_dict, rounded
from training.dpo import DpoJob, run_dpo
from training.plots import loss_curve_markdown
from training.pretrain import PretrainJob, run_pretrain
from training.reward import RewardJob, run_reward
from training.rl import RlJob, run_rl
from training.sft import SftJob, run_sft

JOBS = {"pretrain": PretrainJob, "sft": SftJob, "dpo": DpoJob, "reward": RewardJob, "rl": RlJob}
RUNS = {"pretrain": run_pretrain, "sft": run_sft, "dpo": run_dpo, "reward": run_reward, "rl": run_rl}


def _distributed():
    """Join the process group when torchrun launched us; returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return torch.distributed.get_rank(), world
    return 0, 1


def _pipes():
    """A Pipes context when a Dagster run launched us (it sets DAGSTER_PIPES_CONTEXT), else nothing."""
    if "DAGSTER_PIPES_CONTEXT" not in os.environ:
        return nullcontext(None)
    from dagster_pipes import open_dagster_pipes

    return open_dagster_pipes()


def _metadata(stage: str, result: dict) -> dict:
    m = result["metrics"]
    meta = {"checkpoint": {"raw_value": result["path"], "type": "path"},
            "loss_curve": {"raw_value": loss_curve_markdown(result["history"], m.get("unigram_baseline")), "type": "md"}}
    if stage == "rl":  # a policy-gradient loss says little; the reward (train batches, held-out prompts) is the curve
        meta = {"checkpoint": meta["checkpoint"], "reward_curve": {"raw_value": loss_curve_markdown(result["history"], quantity="reward"),
                                                                  "type": "md"}}
    for k, v in m.items():
        if isinstance(v, (int, float)):
            meta[k] = {"raw_value": rounded(v), "type": "int" if isinstance(v, int) else "float"}
    if result.get("calibration"):  # reward model: predicted win probability vs how often it held, on held-out pairs
        columns = [{"name": k, "type": "string" if k == "bin" else "float"} for k in result["calibration"][0]]
        meta["calibration"] = {"raw_value": {"records": result["calibration"], "schema": columns}, "type": "table"}
    lineage = json.loads(Path(result["path"], "lineage.json").read_text())
    summary = {k: lineage.get(k) for k in ("stage", "shards_hash", "mixture_weights", "tokenizer_hash", "base_checkpoint_hash",
                                           "reference_checkpoint_hash", "upstream") if lineage.get(k) is not None}
    meta["lineage"] = {"raw_value": summary, "type": "json"}
    return meta


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(JOBS))
    parser.add_argument("--config", required=True, help="JSON file with the job's fields: paths, `config` (the stage's "
                                                          "config dataclass, e.g. RlConfig's fields), `lineage`")
    parser.add_argument("--error-file", help="on failure, write the error here (the Dagster asset shows it in the run's failure)")
    args = parser.parse_args(argv)
    try:
        _run(args)
    except Exception as exc:
        if args.error_file:
            Path(args.error_file).write_text("".join(traceback.format_exception(exc)[-12:]))
        raise


def _run(args) -> None:
    job = config_from_dict(JOBS[args.stage], json.loads(Path(args.config).read_text()))
    rank, _ = _distributed()
    with _pipes() as pipes:
        bar = None
        if pipes is None and rank == 0 and sys.stderr.isatty():  # interactive CLI run: a progress bar
            from tqdm import tqdm

            steps = job.config.train_config().max_steps if args.stage == "pretrain" else job.config.steps
            bar = tqdm(total=steps, unit="step", desc=args.stage)

        def log(record: dict) -> None:
            line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            if pipes is not None:
                pipes.log.info(line)
            elif bar is not None:
                if "step" in record and record.get("event") != "resumed":
                    bar.update(record["step"] - bar.n)
                bar.set_postfix_str(line[:80])
            elif rank == 0:
                print(line, flush=True)

        result = RUNS[args.stage](job, log=log)
        if bar is not None:
            bar.close()
        if rank == 0:
            if pipes is not None:
                pipes.report_asset_materialization(metadata=_metadata(args.stage, result),
                                                   data_version=result["metrics"]["checkpoint_hash"])
            else:
                print(json.dumps(result["metrics"], default=str))


if __name__ == "__main__":
    main()
