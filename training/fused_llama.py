"""A training-time twin of transformers' LlamaForCausalLM with fused projections.

Same maths and the same weights as the stock model, laid out for speed: one QKV matmul
instead of three, one gate/up matmul instead of two, rotary tables computed once,
`F.rms_norm` and causal SDPA, so torch.compile sees a short, regular graph. Weights
convert exactly both ways (`from_hf`, `to_hf`), so checkpoints stay stock Hugging Face
Llama and nothing downstream knows this class exists. Under autocast the residual
stream is bf16 too (as in Megatron's bf16 training), which saves memory traffic; master
weights, gradients and optimizer state stay fp32. No KV cache, no padding masks:
it is for packed next-token training only; generation and DPO use the stock model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutput


def rotary_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin for positions 0..length-1 laid out as HF's default RoPE (halves duplicated, rotate_half)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, head_dim: int, ffn: int, eps: float):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.ffn, self.eps = heads, kv_heads, head_dim, ffn, eps
        self.attn_norm = nn.Parameter(torch.ones(d))
        self.qkv = nn.Linear(d, (heads + 2 * kv_heads) * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, d, bias=False)
        self.mlp_norm = nn.Parameter(torch.ones(d))
        self.gate_up = nn.Linear(d, 2 * ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = rms_norm(x, self.attn_norm, self.eps)
        q, k, v = self.qkv(h).view(b, t, -1, self.head_dim).split([self.heads, self.kv_heads, self.kv_heads], dim=2)
        q, k = apply_rotary(q.transpose(1, 2), cos, sin), apply_rotary(k.transpose(1, 2), cos, sin)
        att = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), is_causal=True, enable_gqa=self.kv_heads != self.heads)
        x = x + self.o(att.transpose(1, 2).reshape(b, t, -1))
        gate, up = self.gate_up(rms_norm(x, self.mlp_norm, self.eps)).split(self.ffn, dim=-1)
        return x + self.down(F.silu(gate) * up)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF LlamaRMSNorm: normalize in fp32, cast back, then scale."""
    return weight * F.rms_norm(x.float(), (x.size(-1),), eps=eps).to(x.dtype)


class FusedLlama(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(
            Block(config.hidden_size, config.num_attention_heads, config.num_key_value_heads, head_dim,
                  config.intermediate_size, config.rms_norm_eps) for _ in range(config.num_hidden_layers))
        self.norm = nn.Parameter(torch.ones(config.hidden_size))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight
        rope = config.rope_parameters
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"FusedLlama implements default RoPE only, not {rope['rope_type']!r}; train with the stock model")
        cos, sin = rotary_tables(head_dim, config.max_position_embeddings, rope["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> CausalLMOutput:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("FusedLlama trains on packed rows only; use the stock LlamaForCausalLM for padded batches")
        t = input_ids.size(1)
        if t > self.cos.size(0):
            raise ValueError(f"rows of {t} tokens exceed the model's context of {self.cos.size(0)}")
        x = self.embed(input_ids)
        if torch.is_autocast_enabled(x.device.type):  # bf16 residual stream; weights and optimizer stay fp32
            x = x.to(torch.get_autocast_dtype(x.device.type))
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin)
        return CausalLMOutput(logits=self.lm_head(rms_norm(x, self.norm, self.config.rms_norm_eps)))

    # ---- exact weight conversion to and from the stock model ------------------------
    @classmethod
    def from_hf(cls, hf_model) -> FusedLlama:
        fused = cls(hf_model.config).to(hf_model.device)
        sd = hf_model.state_dict()
        with torch.no_grad():
            fused.embed.weight.copy_(sd["model.embed_tokens.weight"])
            fused.norm.copy_(sd["model.norm.weight"])
            if not hf_model.config.tie_word_embeddings:
                fused.lm_head.weight.copy_(sd["lm_head.weight"])
            for i, layer in enumerate(fused.layers):
                p = f"model.layers.{i}."
                layer.attn_norm.copy_(sd[p + "input_layernorm.weight"])
                layer.mlp_norm.copy_(sd[p + "post_attention_layernorm.weight"])
                layer.qkv.weight.copy_(torch.cat([sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
                layer.o.weight.copy_(sd[p + "self_attn.o_proj.weight"])
                layer.gate_up.weight.copy_(torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]]))
                layer.down.weight.copy_(sd[p + "mlp.down_proj.weight"])
        return fused

    def to_hf(self, hf_model) -> None:
        """Copy these weights into a stock LlamaForCausalLM of the same config."""
        sd = {"model.embed_tokens.weight": self.embed.weight, "model.norm.weight": self.norm}
        if not self.config.tie_word_embeddings:
            sd["lm_head.weight"] = self.lm_head.weight
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            q, k, v = layer.qkv.weight.split([layer.heads * layer.head_dim, *[layer.kv_heads * layer.head_dim] * 2])
            gate, up = layer.gate_up.weight.split(layer.ffn)
            sd.update({p + "input_layernorm.weight": layer.attn_norm, p + "post_attention_layernorm.weight": layer.mlp_norm,
                       p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                       p + "self_attn.o_proj.weight": layer.o.weight, p + "mlp.gate_proj.weight": gate,
                       p + "mlp.up_proj.weight": up, p + "mlp.down_proj.weight": layer.down.weight})
        missing, unexpected = hf_model.load_state_dict({k: v.detach() for k, v in sd.items()}, strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight"]:
            raise ValueError(f"weight layout mismatch: missing {missing}, unexpected {unexpected}")
