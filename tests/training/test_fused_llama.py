"""FusedLlama must be the stock LlamaForCausalLM in a different layout: same logits, same gradients."""

import pytest
import torch
from transformers import LlamaForCausalLM

from training import loop
from training.fused_llama import FusedLlama
from training.presets import llama_config


def _stock(kv_heads: int = 2, tied: bool = True) -> LlamaForCausalLM:
    cfg = llama_config("test", 300, 0, 0, 1)
    cfg._attn_implementation = "sdpa"
    cfg.num_key_value_heads, cfg.tie_word_embeddings = kv_heads, tied
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # non-trivial norm weights, so a swapped norm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("kv_heads,tied", [(2, True), (1, True), (2, False)])
def test_same_logits_and_gradients_as_the_stock_model(kv_heads, tied):
    stock = _stock(kv_heads, tied)
    fused = FusedLlama.from_hf(stock)
    x = torch.randint(0, 300, (3, 64))
    x[0, 5] = stock.config.pad_token_id  # the pad row of the embedding gets no gradient from lookups
    assert torch.allclose(fused(input_ids=x).logits, stock(input_ids=x).logits, atol=1e-5)

    loop.token_loss_sum(stock, x, x).backward()
    loop.token_loss_sum(fused, x, x).backward()
    grads = dict(stock.named_parameters())
    layer = fused.layers[1]
    assert torch.allclose(layer.qkv.weight.grad[:32], grads["model.layers.1.self_attn.q_proj.weight"].grad, atol=1e-5)
    assert torch.allclose(layer.gate_up.weight.grad[88:], grads["model.layers.1.mlp.up_proj.weight"].grad, atol=1e-5)
    assert torch.allclose(fused.embed.weight.grad, grads["model.embed_tokens.weight"].grad, atol=1e-5)


def test_weights_round_trip_exactly_into_a_stock_model():
    stock = _stock()
    fused = FusedLlama.from_hf(stock)
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # as if trained
    target = LlamaForCausalLM(stock.config)
    fused.to_hf(target)
    x = torch.randint(0, 300, (2, 40))
    assert torch.allclose(target(input_ids=x).logits, fused(input_ids=x).logits, atol=1e-5)
    back = FusedLlama.from_hf(target)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), fused.state_dict().values()))


def test_refuses_what_it_does_not_implement():
    stock = _stock()
    fused = FusedLlama.from_hf(stock)
    x = torch.randint(0, 300, (2, 65))
    with pytest.raises(ValueError, match="exceed the model's context of 64"):
        fused(input_ids=x)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, :3] = 0
    with pytest.raises(ValueError, match="packed rows only"):
        fused(input_ids=x[:, :10], attention_mask=mask)
    cfg = stock.config
    cfg.rope_parameters = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}
    with pytest.raises(ValueError, match="default RoPE only"):
        FusedLlama(cfg)
