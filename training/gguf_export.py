"""Export a Llama checkpoint (HF layout: config.json, model.safetensors, tokenizer.json) to GGUF for llama.cpp.

Written with the `gguf` package (llama.cpp's own writer) because llama.cpp's converter refuses
tokenizers whose pre-tokenizer hash it does not know ("BPE pre-tokenizer was not recognized").
Ours is byte-level BPE with GPT-2's split regex, which llama.cpp knows as `gpt-2`, so the file
says so. Q and K projections are permuted from Hugging Face's rotate-half RoPE layout to GGML's
interleaved pairs, as llama.cpp's converter does; everything else maps one to one.

    python -m training.gguf_export lake/models/promoted lake/models/gguf/model.gguf
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines.contract import Check, CheckResult, Stage, StageContext, config_to_dict, param
from pipelines.lake import Lake, file_hash

_LAYER_TENSORS = {  # HF name inside model.layers.{i}. -> GGUF name inside blk.{i}.
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_TENSORS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                   "lm_head.weight": "output.weight"}


def rope_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a Q/K projection from rotate-half order (first half, second half of each head) to interleaved pairs."""
    head_dim = weight.shape[0] // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_tensors(checkpoint: Path, config: dict) -> dict[str, np.ndarray]:
    """GGUF tensor name -> array (float32), Q/K permuted for GGML's RoPE."""
    from safetensors.numpy import load_file

    weights = load_file(str(Path(checkpoint) / "model.safetensors"))
    out = {}
    for name, value in weights.items():
        value = value.astype(np.float32)
        if name in _GLOBAL_TENSORS:
            if name == "lm_head.weight" and config.get("tie_word_embeddings"):
                continue  # tied: llama.cpp reuses token_embd
            out[_GLOBAL_TENSORS[name]] = value
            continue
        parts = name.split(".", 3)  # model.layers.<i>.<rest>
        if len(parts) != 4 or parts[:2] != ["model", "layers"] or parts[3] not in _LAYER_TENSORS:
            raise ValueError(f"{checkpoint}: tensor {name} has no GGUF name (not a Llama checkpoint?)")
        layer, rest = parts[2], parts[3]
        if rest == "self_attn.q_proj.weight":
            value = rope_permute(value, config["num_attention_heads"])
        elif rest == "self_attn.k_proj.weight":
            value = rope_permute(value, config.get("num_key_value_heads") or config["num_attention_heads"])
        out[f"blk.{layer}.{_LAYER_TENSORS[rest]}"] = value
    return out


def _vocabulary(checkpoint: Path) -> tuple[list[str], list[int], list[str]]:
    """(tokens in id order, GGUF token types, merges) from tokenizer.json (byte-level BPE)."""
    import gguf

    spec = json.loads((Path(checkpoint) / "tokenizer.json").read_text())
    if spec["model"]["type"] != "BPE":
        raise ValueError(f"{checkpoint}: GGUF export supports byte-level BPE tokenizers, not {spec['model']['type']}")
    vocab = dict(spec["model"]["vocab"])
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    vocab.update({t["content"]: t["id"] for t in spec.get("added_tokens", [])})
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError(f"{checkpoint}: token ids are not 0..{len(by_id) - 1} without gaps")
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in by_id]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return [t for t, _ in by_id], [int(t) for t in types], merges


def export_gguf(checkpoint: Path, out: Path, dtype: str = "f16") -> dict:
    """Write `out` atomically; return what was written (tensor count, bytes, file type)."""
    import gguf

    checkpoint, out = Path(checkpoint), Path(out)
    config = json.loads((checkpoint / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"{checkpoint}: GGUF export handles Llama checkpoints, got model_type {config.get('model_type')!r}")
    tokens, types, merges = _vocabulary(checkpoint)
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(checkpoint.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id)):
        if config.get(key) is not None:
            add(config[key])
    writer.add_add_bos_token(False)  # the project's rule: BOS = EOS = the document separator, never added
    if (template := checkpoint / "chat_template.jinja").exists():
        writer.add_chat_template(template.read_text())
    tensors = gguf_tensors(checkpoint, config)
    for name, value in tensors.items():
        writer.add_tensor(name, value.astype(np.float16) if dtype == "f16" and value.ndim == 2 else value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return {"path": str(out), "tensors": len(tensors), "bytes": out.stat().st_size, "dtype": dtype,
            "tokenizer_pre": "gpt-2", "vocab_size": len(tokens)}


@dataclass(frozen=True)
class GgufConfig:
    dtype: Literal["f16", "f32"] = param("f16", "weight matrices in half precision (norms stay float32), or all float32")


def export_promoted(ctx: StageContext, cfg: GgufConfig) -> dict:
    info = export_gguf(ctx.lake.promoted_dir(), ctx.lake.gguf_path(), cfg.dtype)
    manifest = {"asset": "promoted_gguf", **info, "content_hash": file_hash(ctx.lake.gguf_path()), "config": config_to_dict(cfg)}
    ctx.lake.write_manifest("promoted_gguf", None, manifest)
    return manifest


def _reads_back(lake: Lake, manifest: dict) -> CheckResult:
    import gguf

    reader = gguf.GGUFReader(str(lake.gguf_path()))
    pre = reader.fields["tokenizer.ggml.pre"]
    found = {"tensors": len(reader.tensors), "tokenizer_pre": bytes(pre.parts[pre.data[0]]).decode()}
    return CheckResult(found == {"tensors": manifest["tensors"], "tokenizer_pre": "gpt-2"}, found)


GGUF = Stage(name="promoted_gguf", config=GgufConfig, run=export_promoted, inputs=("promoted_model",),
             description="The promoted model as GGUF (llama.cpp, Ollama, LM Studio): Llama tensors with GGML's RoPE layout, "
                         "the byte-level BPE tokenizer as llama.cpp's `gpt-2` pre-tokenizer, the chat template.",
             checks=(Check("gguf_reads_back", "llama.cpp's reader opens the file and finds every tensor and the tokenizer.",
                           _reads_back),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", choices=("f16", "f32"), default="f16")
    args = parser.parse_args()
    print(json.dumps(export_gguf(args.checkpoint, args.out, args.dtype), indent=1))


if __name__ == "__main__":
    main()
