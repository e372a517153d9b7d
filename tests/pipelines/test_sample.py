import collections
import hashlib

from pipelines.sample import generate_sample


def _tree_hash(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_sample(tmp_path / name, seed=seed, n_files=2, pages_per_file=15)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")


def test_sample_plants_every_case(sample_dir, truth):
    kinds = collections.Counter(r["kind"] for r in truth.values())
    for kind in ("article", "exact_dup", "near_dup", "pii", "toxic", "spam", "encoding", "non_html", "http_error", "undecodable"):
        assert kinds[kind] > 0, kind
    assert kinds["corrupt"] == 1
    langs = {r["lang"] for r in truth.values() if r["kind"] in ("article", "encoding")}
    assert {"en", "de", "fr", "es"} <= langs and len(langs - {"en", "de", "fr", "es"}) >= 2
    charsets = {r["charset"] for r in truth.values() if r["kind"] == "encoding"}
    assert {"windows-1252", "iso-8859-1", "shift_jis", "windows-1251"} <= charsets
    files = sorted(p.name for p in (sample_dir / "crawl").iterdir())
    assert any(f.endswith(".warc.gz") for f in files) and any(f.endswith(".warc") for f in files)
    assert any(f.endswith(".wet.gz") for f in files)
    assert sorted(p.name for p in (sample_dir / "sources").iterdir()) == ["arxiv", "books", "code", "qa", "wiki"]
