"""GGUF export: read back with llama.cpp's `gguf` reader and run by a NumPy Llama that follows GGML's
conventions (interleaved RoPE pairs, tensors by GGUF name); its logits must equal transformers'."""

import numpy as np
import pytest
import torch

from training.gguf_export import export_gguf, rope_permute


@pytest.fixture(scope="module")
def checkpoint(token_lake, tmp_path_factory):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from training.checkpoint import save_checkpoint
    from training.presets import llama_config

    tok_dir = token_lake.partition_dir("tokenizer")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = llama_config("test", len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    cfg.num_key_value_heads = cfg.num_attention_heads // 2  # grouped-query attention: K is permuted per KV head
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # the default init leaves norms at 1; make every tensor matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_checkpoint(model, tok_dir, tmp_path_factory.mktemp("gguf") / "ckpt", {"stage": "test"})


def _field(reader, key):
    field = reader.fields[key]
    value = field.parts[field.data[0]]
    return bytes(value).decode() if field.types[0].name == "STRING" else value.tolist()[0]


def _ggml_llama_logits(path, ids: list[int]) -> np.ndarray:
    """Llama forward over GGUF tensors, RoPE on adjacent pairs as GGML computes it for LLAMA."""
    import gguf

    r = gguf.GGUFReader(str(path))
    t = {x.name: np.asarray(x.data, dtype=np.float64) for x in r.tensors}
    heads, kv_heads = _field(r, "llama.attention.head_count"), _field(r, "llama.attention.head_count_kv")
    dim, eps = _field(r, "llama.rope.dimension_count"), _field(r, "llama.attention.layer_norm_rms_epsilon")
    base, layers = _field(r, "llama.rope.freq_base"), _field(r, "llama.block_count")

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # (n, heads, dim): rotate pairs (0, 1), (2, 3), ...
        n = x.shape[0]
        angles = np.arange(n)[:, None] * base ** (-np.arange(0, dim, 2) / dim)[None, :]
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    x, n = t["token_embd.weight"][ids], len(ids)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(layers):
        h = rms(x, t[f"blk.{i}.attn_norm.weight"])
        q = rope((h @ t[f"blk.{i}.attn_q.weight"].T).reshape(n, heads, dim))
        k = rope((h @ t[f"blk.{i}.attn_k.weight"].T).reshape(n, kv_heads, dim)).repeat(heads // kv_heads, axis=1)
        v = (h @ t[f"blk.{i}.attn_v.weight"].T).reshape(n, kv_heads, dim).repeat(heads // kv_heads, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(dim) + mask
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", weights, v).reshape(n, -1) @ t[f"blk.{i}.attn_output.weight"].T
        h = rms(x, t[f"blk.{i}.ffn_norm.weight"])
        gate = h @ t[f"blk.{i}.ffn_gate.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ t[f"blk.{i}.ffn_up.weight"].T)) @ t[f"blk.{i}.ffn_down.weight"].T
    return rms(x, t["output_norm.weight"]) @ t.get("output.weight", t["token_embd.weight"]).T


def test_gguf_logits_equal_transformers_and_metadata_names_the_tokenizer(checkpoint, tmp_path):
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    ids = tok("The river flows past the old mill in Arlen.")["input_ids"]
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(checkpoint).float()(torch.tensor([ids])).logits[0].double().numpy()
    f32 = export_gguf(checkpoint, tmp_path / "model-f32.gguf", dtype="f32")
    np.testing.assert_allclose(_ggml_llama_logits(f32["path"], ids), want, atol=1e-4)
    f16 = export_gguf(checkpoint, tmp_path / "model.gguf")
    assert np.abs(_ggml_llama_logits(f16["path"], ids) - want).max() < 0.05 and f16["bytes"] < f32["bytes"]

    r = gguf.GGUFReader(f16["path"])
    assert _field(r, "tokenizer.ggml.model") == "gpt2" and _field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = r.fields["tokenizer.ggml.tokens"]
    assert [bytes(tokens.parts[i]).decode() for i in tokens.data] == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert _field(r, "tokenizer.ggml.add_bos_token") is False and _field(r, "tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert "{%" in _field(r, "tokenizer.chat_template")
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed


def _rope_unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    head_dim = weight.shape[0] // n_heads
    return weight.reshape(n_heads, head_dim // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def test_rope_permutation_is_inverted_exactly():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    assert np.array_equal(_rope_unpermute(rope_permute(w, 8), 8), w)
    head = rope_permute(np.arange(8, dtype=np.float32)[:, None], 1)[:, 0]
    assert head.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]  # rotate-half pairs (i, i + d/2) become neighbours


def test_a_non_llama_checkpoint_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        export_gguf(tmp_path, tmp_path / "x.gguf")


def test_gguf_stage_exports_the_promoted_model_and_its_check_reads_it_back(checkpoint, lake):
    import shutil

    from pipelines.contract import run_stage
    from training.gguf_export import GGUF

    shutil.copytree(checkpoint, lake.promoted_dir())
    manifest = run_stage(GGUF, lake)
    assert lake.gguf_path().is_file() and manifest["tensors"] > 0 and manifest["dtype"] == "f16"
    assert lake.read_manifest("promoted_gguf", None) == manifest  # what the check reads in Dagster
    verdict = GGUF.checks[0].evaluate(lake, manifest)
    assert verdict.passed, verdict.metadata
    assert not GGUF.checks[0].evaluate(lake, {**manifest, "tensors": manifest["tensors"] + 1}).passed


@pytest.mark.slow
def test_llama_cpp_reads_the_export_like_transformers(checkpoint, tmp_path):
    """Needs llama-cpp-python (it compiles llama.cpp at install, so it is not a project dependency)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    text = "The river flows past the old mill in Arlen."
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(checkpoint).float()(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=export_gguf(checkpoint, tmp_path / "m.gguf", "f32")["path"], logits_all=True,
                          verbose=False, n_ctx=64)
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids
    llm.eval(ids)
    got = np.array(llm.scores[:len(ids)])
    assert np.abs(got - want).max() < 0.02 and (got.argmax(-1) == want.argmax(-1)).all()
