"""Per-language toxicity classifiers trained on labeled text, and the tagger that routes documents to them."""

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.contract import run_stage
from pipelines.curation import stages, toxicity_train
from pipelines.curation.taggers import toxicity_tags
from pipelines.curation.toxicity import HashedNgramClassifier, ProfanityCheckScorer, TrainedScorer, WordListScorer, has_word_list
from pipelines.curation.toxicity_train import ToxicityTrainConfig, calibrate, read_labeled, train_toxicity_model
from pipelines.sample.text import TOPICS, TextGenerator

_INSULTS = ["Idiot", "Vollpfosten", "Dummkopf", "Mistkerl", "Versager", "Lügner", "Witzfigur"]


def _german_examples(n: int = 240, seed: int = 0) -> list[tuple[str, bool]]:
    rng, gen = random.Random(seed), TextGenerator(random.Random(seed))
    toxic = [f"Du bist ein {rng.choice(_INSULTS)}, halt endlich den Mund, du {rng.choice(_INSULTS)}!" for _ in range(n // 3)]
    ordinary = [gen.sentence("de", rng.choice(TOPICS)) for _ in range(n - len(toxic))]
    examples = [(t, True) for t in toxic] + [(t, False) for t in ordinary]
    rng.shuffle(examples)
    return examples


def test_calibration_flags_at_most_the_allowed_share_of_ordinary_examples():
    scores, labels = np.array([0.1, 0.2, 0.3, 0.9, 0.4, 0.05]), np.array([False, False, True, True, True, False])
    out = calibrate(scores, labels, 0.34)  # 3 ordinary examples: at most 1 may be flagged
    assert out["threshold"] == pytest.approx(0.15)  # halfway between the ordinary 0.1 and the next score, 0.2
    assert out["ordinary_flagged"] == pytest.approx(1 / 3, abs=1e-3) and out["recall"] == 1.0 and out["precision"] == 0.75
    assert calibrate(scores, labels, 0.01)["ordinary_flagged"] == 0.0  # none may be flagged: above every ordinary score


def test_trained_model_separates_the_languages_toxic_text_deterministically(tmp_path):
    examples = _german_examples()
    cfg = ToxicityTrainConfig(folds=3)
    report = train_toxicity_model(examples, tmp_path / "a" / "de.npz", cfg)
    assert report["cv_auc"] > 0.95 and report["ordinary_flagged"] <= cfg.max_ordinary_flagged and report["recall"] > 0.8
    assert json.loads((tmp_path / "a" / "de.npz.json").read_text())["threshold"] == report["threshold"]
    train_toxicity_model(examples, tmp_path / "b" / "de.npz", cfg)
    a, b = (HashedNgramClassifier.load(tmp_path / d / "de.npz") for d in ("a", "b"))
    assert np.array_equal(a.coef, b.coef) and a.intercept == b.intercept
    scores = TrainedScorer(str(tmp_path / "a" / "de.npz")).score(["Du bist ein Idiot, halt den Mund!", "Die Sonne scheint."])
    assert scores[0] > report["threshold"] > scores[1]


def test_labeled_files_name_bad_rows_and_need_both_classes(tmp_path):
    tsv = tmp_path / "de.tsv"
    tsv.write_text("text\ttoxic\nDu Idiot!\t1\nGuten Morgen.\tok\n\tmaybe\nSchöner Tag heute.\t0\n", encoding="utf-8")
    examples, problems = read_labeled(tsv)
    assert examples == [("Du Idiot!", True), ("Guten Morgen.", False), ("Schöner Tag heute.", False)]
    assert problems == [f"{tsv}:4: needs a text and a toxic label in ['0', '1', 'false', 'no', 'ok', 'toxic', 'true', 'yes']"]
    jsonl = tmp_path / "de.jsonl"
    jsonl.write_text('{"text": "Guten Morgen.", "toxic": false}\n{broken\n', encoding="utf-8")
    with pytest.raises(ValueError, match="needs both toxic and ordinary examples"):
        read_labeled(jsonl)
    (tmp_path / "bad.tsv").write_text("sentence\tlabel\nx\t1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="`text` and `toxic` columns"):
        read_labeled(tmp_path / "bad.tsv")


def test_documents_in_a_language_with_a_model_are_scored_and_filtered_by_it(curated_lake, tmp_path):
    lake, key = curated_lake
    model = tmp_path / "de.npz"
    report = train_toxicity_model(_german_examples(), model, ToxicityTrainConfig(folds=3))
    tagged = run_stage(stages.tagger_stage(toxicity_tags.TAGGER), lake, key, language_models={"de": str(model)})
    assert tagged["language_scorers"].items() >= {"de": f"trained:{model}", "en": "alt-profanity-check",
                                                  "es": "wordlist:es", "fr": "wordlist:fr"}.items()
    tox = pq.read_table(lake.data_path("toxicity_tags", key)).to_pylist()
    langs = pq.read_table(lake.data_path("language_id", key)).column("lang").to_pylist()
    assert {r["toxicity_scorer"] for r, lang in zip(tox, langs) if lang == "de"} == {f"trained:{model}"}
    assert {r["toxicity_scorer"] for r, lang in zip(tox, langs) if lang == "en"} == {"alt-profanity-check"}
    curated = run_stage(stages.curated_stage(), lake, key, toxicity_tags={"language_thresholds": {"de": report["threshold"]}})
    warning = next(c for c in stages.curated_stage().checks if c.name == "kept_languages_screened_for_toxicity")
    assert warning.evaluate(lake, curated).passed  # de by its model, fr/es by word lists
    run_stage(stages.tagger_stage(toxicity_tags.TAGGER), lake, key, word_lists=False)
    no_lists = run_stage(stages.curated_stage(), lake, key)
    assert warning.evaluate(lake, no_lists).metadata["unscreened"] == ["de", "es", "fr"]
    assert not warning.evaluate(lake, no_lists).passed and "toxicity_train" in warning.evaluate(lake, no_lists).message
    unscored = pq.read_table(lake.data_path("toxicity_tags", key)).to_pylist()
    assert {r["toxicity_scorer"] for r, lang in zip(unscored, langs) if lang != "en"} == {toxicity_tags.UNSCORED}
    assert all(r["toxicity"] == 0 for r, lang in zip(unscored, langs) if lang != "en")


def test_word_lists_match_whole_words_and_phrases_in_the_documents_language():
    es = WordListScorer("es")
    assert es.score(["Eres un pendejo.", "El Pendejo", "me cago en la leche", "una concha de la playa"]).tolist()[:3] == [1, 1, 1]
    assert es.score(["Despendejado no es una palabra listada entera", "cagon en la"]).tolist() == [0, 0]
    assert WordListScorer("nb").lang == "no" and has_word_list("tl") and not has_word_list("gl")
    with pytest.raises(ValueError, match="no toxicity word list for language 'gl'"):
        WordListScorer("gl")


def test_a_blended_english_model_averages_with_the_shipped_scorer(tmp_path):
    examples = [(f"you are a stupid idiot number {i}", True) for i in range(20)] + \
               [(f"the weather is lovely today number {i}", False) for i in range(20)]
    own = train_toxicity_model(examples, tmp_path / "own.npz", ToxicityTrainConfig(folds=2))
    blended = train_toxicity_model(examples, tmp_path / "blend.npz", ToxicityTrainConfig(folds=2, blend_shipped=True))
    assert blended["config"]["blend_shipped"] and not own["config"]["blend_shipped"]
    texts = ["what a stupid idiot", "lovely weather"]
    mine, shipped = HashedNgramClassifier.load(tmp_path / "own.npz").predict(texts), ProfanityCheckScorer().score(texts)
    assert np.allclose(HashedNgramClassifier.load(tmp_path / "blend.npz").predict(texts), (mine + shipped) / 2, atol=1e-6)


@pytest.fixture
def curated_lake(sample_dir, tmp_path):
    from pipelines.ingest import ingest_crawl_file
    from pipelines.lake import Lake

    lake = Lake(tmp_path / "lake")
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)[0]
    ingest_crawl_file(lake, sample_dir / "crawl", key)
    *tagging, curate = stages.curation_stages()
    for stage in tagging:
        run_stage(stage, lake, key)
    run_stage(curate, lake, key)
    return lake, key


def test_cross_validation_scores_every_example_out_of_fold():
    examples = _german_examples(60)
    scores = toxicity_train.cross_validate(examples, ToxicityTrainConfig(folds=3))
    assert scores.shape == (60,) and ((scores >= 0) & (scores <= 1)).all()


def test_filter_thresholds_are_validated():
    with pytest.raises(ValueError, match="max_toxic_fraction"):
        toxicity_tags.ToxicityFilterConfig(max_toxic_fraction=1.5)
    with pytest.raises(ValueError, match="language_thresholds"):
        toxicity_tags.ToxicityFilterConfig(language_thresholds={"de": 2.0})
