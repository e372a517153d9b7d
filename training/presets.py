"""Model size presets over a stock transformers Llama architecture (RMSNorm, SwiGLU, RoPE, SDPA).

Training runs on `FusedLlama`, an exact twin of this architecture laid out for speed;
checkpoints are the stock model. `test` trains in seconds on a laptop CPU, `demo` learns
visibly in a few minutes on 2 CPU cores, the `gpu-*` presets are for a GPU node (bf16,
compile).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelPreset:
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    context_length: int
    # training defaults for this size
    batch_size: int
    grad_accum: int
    lr: float
    warmup_steps: int
    max_steps: int


PRESETS: dict[str, ModelPreset] = {
    "test": ModelPreset(32, 2, 2, 2, 88, 64, batch_size=4, grad_accum=2, lr=3e-3, warmup_steps=2, max_steps=12),
    "demo": ModelPreset(128, 4, 4, 4, 344, 128, batch_size=16, grad_accum=1, lr=3e-3, warmup_steps=20, max_steps=220),
    "gpu-125m": ModelPreset(768, 12, 12, 12, 2048, 1024, batch_size=32, grad_accum=4, lr=6e-4, warmup_steps=700, max_steps=20000),
    "gpu-350m": ModelPreset(1024, 24, 16, 16, 2816, 1024, batch_size=16, grad_accum=8, lr=3e-4, warmup_steps=1000, max_steps=30000),
    "gpu-1b": ModelPreset(2048, 16, 32, 8, 5632, 2048, batch_size=8, grad_accum=16, lr=3e-4, warmup_steps=2000, max_steps=50000),
}


def llama_config(preset: str, vocab_size: int, bos_id: int, eos_id: int, pad_id: int):
    from transformers import LlamaConfig

    p = PRESETS[preset]
    return LlamaConfig(vocab_size=vocab_size, hidden_size=p.hidden_size, intermediate_size=p.intermediate_size,
                       num_hidden_layers=p.layers, num_attention_heads=p.heads, num_key_value_heads=p.kv_heads,
                       max_position_embeddings=p.context_length, tie_word_embeddings=True, rms_norm_eps=1e-5,
                       bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id, attention_dropout=0.0)


def preset_dict(preset: str) -> dict:
    return {"name": preset, **asdict(PRESETS[preset])}
