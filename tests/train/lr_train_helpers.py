"""Tiny, offline model and tokenizer builders for the training tests (no downloads)."""

from __future__ import annotations

import random

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = [f"w{i}" for i in range(180)] + [".", ",", "?"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} "
    "{% if m['role'] == 'assistant' %}{{ eos_token }} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>", unk_token="<unk>",
                                  additional_special_tokens=SPECIALS[4:])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(family: str = "llama", seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=len(SPECIALS) + len(WORDS), hidden_size=48, intermediate_size=96,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=1024, bos_token_id=2, eos_token_id=1, pad_token_id=0,
                  tie_word_embeddings=False)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False))
    return model.float()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS[:150]) for _ in range(n))


def toy_rows(n: int = 4, doc_words: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append({"prompt": [{"role": "user", "content": words(rng, doc_words) + " ? w1 w2"}],
                     "chosen": [{"role": "assistant", "content": "w3 w4 w5 w6 ."}],
                     "rejected": [{"role": "assistant", "content": "w170 w171 w172 w173 w174 w175 ."}]})
    return rows
