"""`llm-foundry-sample OUT_DIR [--seed N] [--files N] [--pages N] [--scale N]` (or `python -m pipelines.sample`)."""

import argparse
from pathlib import Path

from pipelines.sample import generate_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the deterministic sample crawl and source corpora.")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("data/sample"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", type=int, default=3, help="number of WARC files")
    parser.add_argument("--pages", type=int, default=120, help="HTML pages per WARC file")
    parser.add_argument("--scale", type=int, default=1, help="multiplier for the source corpora")
    args = parser.parse_args(argv)
    info = generate_sample(args.out_dir, seed=args.seed, n_files=args.files, pages_per_file=args.pages, scale=args.scale)
    print(f"wrote {info['records']} crawl records to {info['crawl_dir']} and sources to {info['sources_dir']}")
