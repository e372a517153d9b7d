r"""Ingest benchmark: our fastwarc + resiliparse path vs a plain warcio + trafilatura loop.

1. Real pages (when $REALDATA_DIR/extraction exists: 92 news/blog pages with ground-truth
   article text): bag-of-words precision/recall/F1 (lower-cased \w+ tokens, mean over pages)
   and pages/s of our extractor, plain resiliparse main-content and `trafilatura.extract`,
   side by side in one run.
2. Sample WARC files: every combination of WARC parser x HTML extractor on the same files,
   in one process, one core: records/s, MB/s, the speed ratio to the reference loop and
   main-text precision/recall against the sample's planted ground truth.

    python -m benchmarks.ingest_bench [--pages 400] [--crawl-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from pipelines.ingest.html import decode_payload, extract_main_text
from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.sample import generate_sample
from pipelines.settings import setting_path

_WORD = re.compile(r"\w+")


def ours(files: list[Path], extractor: str) -> dict[str, str]:
    out = {}
    for f in files:
        for batch in ingest_warc(f, f.name, extractor=extractor, stats=IngestStats()):
            out.update((r["url"], r["text"]) for r in batch)
    return out


def warcio_loop(files: list[Path], extractor: str) -> dict[str, str]:
    """The reference: warcio records, charset from the header, then the extractor."""
    from warcio.archiveiterator import ArchiveIterator

    out = {}
    for f in files:
        with open(f, "rb") as fh:
            try:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type not in ("response", "conversion"):
                        continue
                    url = rec.rec_headers.get_header("WARC-Target-URI")
                    if rec.rec_type == "conversion":
                        out[url] = rec.content_stream().read().decode("utf-8", "replace")
                        continue
                    if rec.http_headers.get_statuscode() != "200":
                        continue
                    ctype = rec.http_headers.get_header("Content-Type") or ""
                    if "html" not in ctype:
                        continue
                    body = rec.content_stream().read()
                    charset = ctype.split("charset=")[-1] if "charset=" in ctype else None
                    try:
                        html, _ = decode_payload(body, charset)
                    except ValueError:
                        continue
                    if extractor == "trafilatura":
                        import trafilatura

                        text = trafilatura.extract(html, include_comments=True, include_tables=True, deduplicate=False) or ""
                    else:
                        text = extract_main_text(html, extractor)[1]
                    if text:
                        out[url] = text
            except Exception:  # warcio stops at the corrupt gzip member
                pass
    return out


def quality(extracted: dict[str, str], truth: dict[str, dict]) -> tuple[float, float]:
    """Mean word-level precision / recall of extracted text vs the planted main text."""
    precisions, recalls = [], []
    for url, text in extracted.items():
        t = truth.get(url)
        if not t or t["kind"] not in ("article", "near_dup", "exact_dup", "pii", "encoding"):
            continue
        got, want = Counter(_WORD.findall(text.lower())), Counter(_WORD.findall(t["main_text"].lower()))
        overlap = sum((got & want).values())
        precisions.append(overlap / max(sum(got.values()), 1))
        recalls.append(overlap / max(sum(want.values()), 1))
    n = max(len(precisions), 1)
    return sum(precisions) / n, sum(recalls) / n


def bag_of_words(pred: str, gold: str) -> tuple[float, float, float]:
    p, g = Counter(_WORD.findall(pred.lower())), Counter(_WORD.findall(gold.lower()))
    tp = sum((p & g).values())
    if not tp:
        return 0.0, 0.0, 0.0
    precision, recall = tp / sum(p.values()), tp / sum(g.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def _real_pages(root: Path) -> tuple[dict[str, str], dict[str, dict]]:
    import gzip

    truth = json.loads((root / "ground-truth.json").read_text())
    pages = {k: decode_payload(gzip.decompress((root / "html" / f"{k}.html.gz").read_bytes()), None)[0] for k in truth}
    return pages, truth


def real_page_scores(root: Path, extract=lambda h: extract_main_text(h)[1]) -> list[tuple[float, float, float]]:
    """(precision, recall, F1) per real page for one extractor (our default unless given)."""
    pages, truth = _real_pages(root)
    return [bag_of_words(extract(h), truth[k]["articleBody"]) for k, h in pages.items()]


def real_pages(root: Path, repeats: int) -> list[dict]:
    """Extraction quality and speed on the real-page benchmark (scrapinghub's articleBody ground truth)."""
    import trafilatura
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    pages, truth = _real_pages(root)
    cases = [("trafilatura.extract (reference)", lambda h: trafilatura.extract(h) or ""),
             ("resiliparse main content", lambda h: extract_plain_text(HTMLTree.parse(h), main_content=True)),
             ("ours (default extractor)", lambda h: extract_main_text(h)[1])]
    results = []
    for name, fn in cases:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            texts = {k: fn(h) for k, h in pages.items()}
            best = min(best, time.perf_counter() - t0)
        scores = [bag_of_words(texts[k], truth[k]["articleBody"]) for k in pages]
        n = len(scores)
        results.append({"case": name, "pages": n, "pages_per_s": n / best, "precision": sum(s[0] for s in scores) / n,
                        "recall": sum(s[1] for s in scores) / n, "f1": sum(s[2] for s in scores) / n})
    for r in results:
        r["speedup_vs_reference"] = r["pages_per_s"] / results[0]["pages_per_s"]
    return results


def run(files: list[Path], truth: dict[str, dict], repeats: int) -> list[dict]:
    total_mb = sum(f.stat().st_size for f in files) / (1 << 20)
    cases = [("warcio + trafilatura (reference)", warcio_loop, "trafilatura"),
             ("warcio + resiliparse", warcio_loop, "resiliparse"),
             ("fastwarc + trafilatura (ours, option)", ours, "trafilatura"),
             ("fastwarc + resiliparse (ours, default)", ours, "resiliparse")]
    results = []
    for name, fn, extractor in cases:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            docs = fn(files, extractor)
            best = min(best, time.perf_counter() - t0)
        p, r = quality(docs, truth)
        results.append({"case": name, "seconds": best, "docs": len(docs), "docs_per_s": len(docs) / best,
                        "mb_per_s": total_mb / best, "precision": p, "recall": r})
    ref = results[0]["seconds"]
    for res in results:
        res["speedup_vs_reference"] = ref / res["seconds"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=400, help="pages per generated WARC file")
    parser.add_argument("--crawl-dir", type=Path, help="benchmark these WARC files instead (no quality scores)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ingest.json"))
    args = parser.parse_args()
    extraction = setting_path("REALDATA_DIR") / "extraction"
    real = real_pages(extraction, args.repeats) if (extraction / "ground-truth.json").exists() else []
    if real:
        print(f"real pages ({extraction}):\n{'case':<34} {'pages/s':>8} {'x ref':>6} {'prec':>6} {'recall':>6} {'F1':>6}")
        for r in real:
            print(f"{r['case']:<34} {r['pages_per_s']:>8.1f} {r['speedup_vs_reference']:>6.2f} {r['precision']:>6.3f} "
                  f"{r['recall']:>6.3f} {r['f1']:>6.3f}")
        print()
    with tempfile.TemporaryDirectory() as tmp:
        if args.crawl_dir:
            files, truth = sorted(p for p in args.crawl_dir.rglob("*.warc*") if p.is_file()), {}
        else:
            generate_sample(Path(tmp), seed=1, n_files=3, pages_per_file=args.pages)
            files = sorted(p for p in (Path(tmp) / "crawl").iterdir() if ".wet" not in p.name)
            truth = {}
            for line in (Path(tmp) / "crawl_truth.jsonl").read_text().splitlines():
                rec = json.loads(line)
                truth[rec["url"]] = rec
        results = run(files, truth, args.repeats)
    mb = sum(f.stat().st_size for f in files) / (1 << 20) if args.crawl_dir else None
    print(f"{'case':<40} {'docs':>6} {'docs/s':>9} {'MB/s':>7} {'x ref':>6} {'prec':>6} {'recall':>6}")
    for r in results:
        print(f"{r['case']:<40} {r['docs']:>6} {r['docs_per_s']:>9.1f} {r['mb_per_s']:>7.2f} {r['speedup_vs_reference']:>6.2f} "
              f"{r['precision']:>6.3f} {r['recall']:>6.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"files": len(files), "input_mb": mb, "results": results, "real_pages": real}, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
