"""``tiny-gqa``: a 2-layer random Llama (4 query / 2 KV heads) built from a config, no downloads.

Its tokenizer is byte-level (256 byte tokens + BOS/EOS), made in code, so any text encodes.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from workbench.adapters import adapter_for

VOCAB = 258  # 256 bytes + <bos> + <eos>


def byte_tokenizer() -> PreTrainedTokenizerFast:
    byte_to_unicode = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(byte_to_unicode))}
    vocab["<bos>"] = 256
    vocab["<eos>"] = 257
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<eos>",
        name_or_path="tiny-gqa",
        add_bos_token=True,
    )


def tiny_gqa_config(**overrides) -> LlamaConfig:
    values = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        bos_token_id=256,
        eos_token_id=257,
        pad_token_id=257,
        tie_word_embeddings=False,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def build_tiny_gqa(seed: int = 0, attn_implementation: str = "workbench") -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = tiny_gqa_config()
    model = LlamaForCausalLM(config)
    # larger-than-default weights so attention is far from uniform and statistics are informative
    with torch.no_grad():
        for attention in adapter_for(model).attention_modules(model):
            attention.q_proj.weight.mul_(8.0)
            attention.k_proj.weight.mul_(8.0)
    model.set_attn_implementation(attn_implementation)
    return model.eval()
