"""Deterministic small corpora for the non-web sources of a training mixture.

books (JSONL), code (JSONL), wiki (Parquet), arxiv (JSONL.gz) and qa (JSONL): the
formats differ on purpose so source ingest is exercised on each. Wiki articles are
built from a fact table that later stages can use for factuality checks.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

NARRATIVE = [
    "{name} walked slowly towards the {place}, thinking about {thought}.",
    "The wind moved through the {place} as {name} remembered {thought}.",
    "\"We cannot stay here,\" said {name}, looking at the {place}.",
    "For a long time nobody spoke, and {name} listened to the sound of the {place}.",
    "{name} had never told anyone about {thought}, not even an old friend.",
    "When the letter arrived, {name} read it twice and then put it near the window.",
    "By evening the {place} was quiet, and {name} finally understood {thought}.",
    "{name} smiled, because {thought} no longer seemed so frightening.",
    "It was the kind of morning when the {place} looked brighter than usual.",
    "Years later, {name} would still talk about {thought} with a strange kind of pride.",
]
NAMES = ["Margaret", "Thomas", "Eleanor", "Samuel", "Agnes", "Henry", "Clara", "Walter", "Ruth", "Arthur"]
PLACES = ["harbour", "old mill", "forest road", "village square", "garden", "railway station", "lighthouse", "farmhouse"]
THOUGHTS = ["the promise she had made", "his brother's last letter", "the long winter", "the missing key",
            "the journey to the coast", "the quarrel with the neighbours", "the debt they still owed", "the song from childhood"]

CITIES = [
    # city, country, population, river, founded
    ("Arlen", "Norland", 412000, "Vessa", 1214), ("Brevik", "Norland", 98000, "Lunde", 1302),
    ("Castora", "Meridia", 1250000, "Oro", 880), ("Dunmore", "Westmark", 230000, "Tall", 1120),
    ("Elsing", "Westmark", 57000, "Brae", 1411), ("Fenwick", "Osterland", 640000, "Marn", 975),
    ("Galvia", "Meridia", 310000, "Sena", 1033), ("Halden", "Osterland", 82000, "Kell", 1288),
    ("Irvona", "Sudria", 905000, "Amar", 760), ("Jessa", "Sudria", 140000, "Tiro", 1190),
    ("Korvel", "Norland", 47000, "Vessa", 1350), ("Lumen", "Westmark", 1780000, "Tall", 690),
]
WIKI_FRAMES = [
    "{city} is a city in {country}. It has a population of about {pop} people.",
    "{city} lies on the river {river}, which flows through the centre of the old town.",
    "The city of {city} was founded in {year} and became a regional trading centre.",
    "Today {city} is known for its university, its museums and its markets.",
]

CODE_TEMPLATES = [
    'def {verb}_{noun}(items):\n    """{doc}"""\n    result = []\n    for item in items:\n        if item is not None:\n            result.append(item)\n    return result\n',
    'def count_{noun}(records, key="{key}"):\n    """Count {noun} grouped by {key}."""\n    counts = {{}}\n    for record in records:\n        value = record.get(key)\n        counts[value] = counts.get(value, 0) + 1\n    return counts\n',
    'class {Noun}Cache:\n    """A small LRU cache for {noun}."""\n\n    def __init__(self, capacity={cap}):\n        self.capacity = capacity\n        self.data = {{}}\n\n    def get(self, key):\n        return self.data.get(key)\n\n    def put(self, key, value):\n        if len(self.data) >= self.capacity:\n            self.data.pop(next(iter(self.data)))\n        self.data[key] = value\n',
    'function {verb}{Noun}(list) {{\n  // {doc}\n  return list.filter((x) => x !== null).map((x) => x.{key});\n}}\n',
    'def parse_{noun}(line):\n    """Parse one {noun} line of the form name={key}."""\n    name, _, value = line.partition("=")\n    return name.strip(), value.strip()\n',
]
VERBS = ["load", "clean", "merge", "filter", "sort", "validate", "export", "normalize"]
NOUNS = ["users", "orders", "events", "files", "tokens", "rows", "pages", "invoices"]

ARXIV_FRAMES = [
    "We study {problem} in the setting of {setting}.",
    "Our method, {method}, reduces the error by {num}\\% compared with strong baselines.",
    "We prove that the algorithm runs in $O(n \\log n)$ time and uses $O(n)$ memory.",
    "Experiments on {num} benchmark datasets show consistent gains for {problem}.",
    "We further analyse the effect of {setting} on the stability of training.",
    "The code and data are released to support future research on {problem}.",
]
PROBLEMS = ["graph partitioning", "sparse regression", "language model pretraining", "protein folding", "image denoising", "causal discovery"]
SETTINGS = ["limited labelled data", "distributed training", "noisy observations", "streaming inputs", "low precision arithmetic"]
METHODS = ["FastPart", "SparseNet", "DeepMix", "StableFlow", "CausalLens", "QuickFold"]

QA_PAIRS = [
    ("How do I reverse a list in Python?", "Use slicing with a negative step: `items[::-1]` returns a reversed copy, while `items.reverse()` reverses it in place."),
    ("What is the difference between a process and a thread?", "A process has its own memory space, while threads of the same process share memory. Threads are cheaper to create but need synchronisation."),
    ("How can I read a CSV file with pandas?", "Call `pandas.read_csv(path)`. Pass `sep` for other delimiters and `dtype` to control column types."),
    ("Why does my git push get rejected?", "The remote has commits you do not have. Run `git pull --rebase` first, resolve any conflicts, then push again."),
    ("How do I find large files on Linux?", "Use `du -ah . | sort -h | tail -20` to list the twenty largest files and folders below the current directory."),
    ("What does HTTP status 404 mean?", "It means the server could not find the requested resource. Check the URL and whether the page was moved."),
    ("How do I measure execution time in Python?", "Use `time.perf_counter()` before and after the code, or the `timeit` module for small snippets."),
    ("What is a primary key in SQL?", "A primary key is a column or set of columns that uniquely identifies each row of a table and cannot be NULL."),
]


def _books(rng: random.Random, n: int) -> list[dict]:
    docs = []
    for i in range(n):
        chapters = []
        for _ in range(rng.randint(4, 8)):
            sents = [rng.choice(NARRATIVE).format(name=rng.choice(NAMES), place=rng.choice(PLACES), thought=rng.choice(THOUGHTS))
                     for _ in range(rng.randint(5, 9))]
            chapters.append(" ".join(sents))
        docs.append({"id": f"book-{i:04d}", "title": f"The {rng.choice(PLACES).title()} of {rng.choice(NAMES)}", "text": "\n\n".join(chapters)})
    return docs


def _code(rng: random.Random, n: int) -> list[dict]:
    docs = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(2, 4)):
            noun, verb = rng.choice(NOUNS), rng.choice(VERBS)
            parts.append(rng.choice(CODE_TEMPLATES).format(verb=verb, noun=noun, Noun=noun.title(), key=rng.choice(["id", "name", "date", "status"]),
                                                         cap=rng.choice([16, 64, 128]), doc=f"{verb.title()} the {noun} and drop empty entries."))
        lang = "javascript" if "function " in parts[0] else "python"
        docs.append({"id": f"code-{i:04d}", "repo": f"example/{rng.choice(NOUNS)}-tools", "language": lang, "text": "\n\n".join(parts)})
    return docs


def _wiki(rng: random.Random) -> list[dict]:
    docs = []
    for city, country, pop, river, year in CITIES:
        sents = [f.format(city=city, country=country, pop=f"{pop:,}", river=river, year=year) for f in WIKI_FRAMES]
        rest = sents[1:]
        rng.shuffle(rest)
        sents = sents[:1] + rest
        docs.append({"id": f"wiki-{city.lower()}", "title": city, "url": f"https://wiki.example.org/wiki/{city}", "text": " ".join(sents)})
    return docs


def _arxiv(rng: random.Random, n: int) -> list[dict]:
    docs = []
    for i in range(n):
        sents = [f.format(problem=rng.choice(PROBLEMS), setting=rng.choice(SETTINGS), method=rng.choice(METHODS), num=rng.randint(3, 40))
                 for f in rng.sample(ARXIV_FRAMES, k=len(ARXIV_FRAMES))]
        docs.append({"id": f"arxiv-24{i:05d}", "title": f"On {rng.choice(PROBLEMS)} under {rng.choice(SETTINGS)}", "text": " ".join(sents)})
    return docs


def _qa(rng: random.Random, n: int) -> list[dict]:
    docs = []
    for i in range(n):
        q, a = rng.choice(QA_PAIRS)
        docs.append({"id": f"qa-{i:05d}", "text": f"Question: {q}\n\nAnswer: {a}", "score": rng.randint(0, 50)})
    return docs


def generate_sources(out_dir: Path, seed: int = 0, scale: int = 1) -> dict[str, Path]:
    """Write one corpus per source kind under `out_dir/<kind>/`; returns the paths written."""
    rng = random.Random(seed + 1)
    corpora = {"books": _books(rng, 20 * scale), "code": _code(rng, 60 * scale), "wiki": _wiki(rng),
               "arxiv": _arxiv(rng, 40 * scale), "qa": _qa(rng, 60 * scale)}
    paths: dict[str, Path] = {}
    for kind, docs in corpora.items():
        d = out_dir / kind
        d.mkdir(parents=True, exist_ok=True)
        if kind == "wiki":
            path = d / "part-00000.parquet"
            pq.write_table(pa.Table.from_pylist(docs), path)
        elif kind == "arxiv":
            path = d / "part-00000.jsonl.gz"
            path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in docs).encode(), mtime=0))
        else:
            path = d / "part-00000.jsonl"
            lines = [json.dumps(x, ensure_ascii=False) for x in docs]
            if kind == "qa":  # one malformed line: ingest must count and skip it
                lines.insert(len(lines) // 2, '{"id": "qa-broken", "text": "unterminated')
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[kind] = path
    return paths
