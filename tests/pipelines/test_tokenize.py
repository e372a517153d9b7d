import random

import numpy as np
import pytest
from transformers import AutoTokenizer

from pipelines.sample.text import TextGenerator
from pipelines.tokenize import mixture as mix
from pipelines.tokenize import shards as sh
from pipelines.tokenize import tokenizer as tk

TEXTS = ["Grüße aus Köln! Ça coûte 5 €. ¿Qué tal? 日本語のテキスト。 emoji 😀 and\ttabs\nnew lines",
         "def f(x):\n    return {x: [1, 2]}  # code", "", "   leading spaces", "<|user|> is not a role here <|endoftext|>"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    gen = TextGenerator(random.Random(0))
    corpus = ["\n".join(gen.paragraphs(lang, "city", 3)) for lang in ("en", "de", "fr", "es") for _ in range(30)] + TEXTS * 5
    tok = tk.train_bpe(corpus, vocab_size=1000)
    out = tmp_path_factory.mktemp("tok")
    tk.save_hf(tok, out, model_max_length=512)
    return out


def test_autotokenizer_loads_with_specials_and_chat_template(trained):
    t = AutoTokenizer.from_pretrained(str(trained))
    assert (t.eos_token, t.pad_token, t.bos_token, t.model_max_length) == (tk.EOS, tk.PAD, tk.EOS, 512)
    assert t.eos_token_id != t.pad_token_id
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    out = t.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    masked = [i for i, m in zip(ids, mask) if m]
    assert t.decode(masked) == "Hello!" + tk.END_OF_TURN  # loss on the answer and its end-of-turn token only
    prompt = t.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(tk.ASSISTANT)


def test_round_trip_and_no_special_token_injection(trained):
    tok = tk.load_for_encoding(trained)
    for text in TEXTS:
        ids = tok.encode(text).ids
        assert tok.decode(ids, skip_special_tokens=False) == text
    specials = {tok.token_to_id(s) for s in tk.SPECIAL_TOKENS}
    assert not specials & set(tok.encode(TEXTS[-1]).ids)


def test_user_tokenizer_json_gets_missing_specials(trained, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel()
    plain.save(str(tmp_path / "tokenizer.json"))
    tok = tk.load_tokenizer_json(tmp_path / "tokenizer.json")
    assert all(tok.token_to_id(s) is not None for s in tk.SPECIAL_TOKENS)


def test_mixture_plan_hits_token_shares_with_epochs_and_caps():
    rng = random.Random(1)
    tokens = {"web": [rng.randint(100, 900) for _ in range(3000)], "code": [rng.randint(50, 400) for _ in range(400)],
              "wiki": [200] * 20}
    weights = {"web": 0.8, "code": 0.15, "wiki": 0.05}
    budget = 400_000
    picks, plans = mix.plan_mixture(tokens, weights, budget, max_epochs=4, seed=0)
    total = sum(p.selected_tokens for p in plans)
    by = {p.source: p for p in plans}
    assert abs(by["web"].selected_tokens / total - 0.8) < 0.02 and abs(by["code"].selected_tokens / total - 0.15) < 0.02
    assert by["wiki"].capped and by["wiki"].epochs == 4.0  # 20k tokens target, only 4k available
    assert len(picks["wiki"]) == 80 and by["web"].epochs < 1
    again, _ = mix.plan_mixture(tokens, weights, budget, max_epochs=4, seed=0)
    assert again == picks
    with pytest.raises(ValueError, match="no documents"):
        mix.plan_mixture(tokens, {"books": 1.0}, budget, 4, 0)
    with pytest.raises(ValueError, match="non-negative"):
        mix.normalize_weights({"web": -1})
    assert abs(sum(mix.PRESETS["llama1"].values()) - 1) < 1e-9


def test_shard_writer_index_validation_and_megatron(tmp_path):
    docs = [[5, 6, 7], [], [9] * 10, list(range(20))]
    w = sh.ShardWriter(tmp_path / "train", np.dtype("<u2"), eos_id=0, shard_tokens=12)
    for d in docs:
        w.add(d)
    w.flush()
    manifest = {"dtype": "<u2", "eos_id": 0, "vocab_size": 100, "splits": {"train": w.shards}, "tokenizer_hash": "x"}
    assert [s["documents"] for s in w.shards] == [3, 1]
    assert sh.validate_shards(tmp_path, manifest) == []
    # datatrove's companion file: tokenizer (relative to the shard's folder) | bytes per token, then the token count
    assert (tmp_path / "train" / "00000.ds.metadata").read_text() == "../tokenizer|2\n16"
    (tmp_path / "train" / "00001.ds.metadata").write_text("../tokenizer|4\n21")
    assert any("00001.ds.metadata" in p for p in sh.validate_shards(tmp_path, manifest))
    (tmp_path / "train" / "00001.ds.metadata").write_text("../tokenizer|2\n21")
    got = [d.tolist() for s in w.shards for d in sh.iter_documents(tmp_path / "train" / s["file"], np.dtype("<u2"))]
    assert got == [d + [0] for d in docs]
    sh.to_megatron(tmp_path / "train" / "00000.ds", tmp_path / "mega", np.dtype("<u2"))
    assert [x.tolist() for x in sh.read_megatron(tmp_path / "mega")] == [d + [0] for d in docs[:3]]
    with open(tmp_path / "train" / "00000.ds", "r+b") as fh:  # a document that lost its EOS
        fh.seek(6)
        fh.write(np.array([3], "<u2").tobytes())
    assert any("EOS" in p for p in sh.validate_shards(tmp_path, manifest))
    (tmp_path / "train" / "00001.ds").write_bytes(b"\x01")
    assert any("not a whole number" in p for p in sh.validate_shards(tmp_path, manifest))
    (tmp_path / "train" / "00001.ds").write_bytes(b"\x01\x00")
    assert any("index says" in p for p in sh.validate_shards(tmp_path, manifest))
    assert sh.token_dtype(65536) == np.dtype("<u2") and sh.token_dtype(65537) == np.dtype("<u4")
