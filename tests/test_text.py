"""Tokenizers, chunking, sentence splitting and language detection (no downloads)."""

from __future__ import annotations

import logging
import random
import re

import pytest

from longreward.text import (
    Chunk,
    HFTokenizer,
    RegexTokenizer,
    Tokenizer,
    chunk_text,
    detect_language,
    get_tokenizer,
    position_label,
    split_sentences,
)

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. In 1987, researchers at the University of "
    "California published a comprehensive study examining the effects of environmental factors "
    "on childhood development. Their findings, which surprised many, suggested that "
    "socioeconomic status played a far larger role than previously believed."
)

_SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vor", "sel", "dun", "bri", "ost", "hal", "wen"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()


def english_document(n_paragraphs: int = 60, seed: int = 0) -> str:
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n_paragraphs):
        town, river, person = _name(rng), _name(rng), _name(rng)
        paragraphs.append(
            f"In the year {1500 + i}, the town of {town} built a stone bridge across the "
            f"{river} river. The mayor, {person}, paid 3.{i % 10} million coins for it, e.g. "
            f"for timber and iron. Dr. {person} later wrote that the bridge had {i + 3} arches! "
            f"Did it last? It stood for {i * 7 % 300 + 20} years before a flood took it."
        )
    return "\n\n".join(paragraphs)


def chinese_document(n_paragraphs: int = 40, seed: int = 0) -> str:
    rng = random.Random(seed)
    chars = "山水河林石田金木火土风云江海天星月光明春秋冬夏东西南北"
    paragraphs = []
    for i in range(n_paragraphs):
        village = "".join(rng.choice(chars) for _ in range(2))
        river = "".join(rng.choice(chars) for _ in range(2))
        paragraphs.append(
            f"在{1500 + i}年，{village}村的居民在{river}河上修建了一座石桥。"
            f"村长花费了{i + 3}万两银子！这座桥有{i % 9 + 2}个拱。它保存了多久？"
            f"它屹立了{i * 7 % 300 + 20}年，后来被洪水冲毁；村民们又重建了它。"
        )
    return "\n".join(paragraphs)


# --- tokenizers -------------------------------------------------------------------------


def test_regex_tokenizer_count_is_close_to_bpe_rules_of_thumb() -> None:
    tok = RegexTokenizer()
    n = tok.count(PARAGRAPH)
    # GPT-style BPEs: ~4 characters per token and ~0.75 words per token in English prose.
    by_chars = len(PARAGRAPH) / 4
    by_words = len(PARAGRAPH.split()) / 0.75
    assert 0.75 * by_chars <= n <= 1.25 * by_chars
    assert 0.75 * by_words <= n <= 1.25 * by_words
    assert n == len(tok.spans(PARAGRAPH))


def test_regex_tokenizer_spans_and_scripts() -> None:
    tok = RegexTokenizer()
    text = "Hi, 世界! 12345 internationalization"
    pieces = [text[s:e] for s, e in tok.spans(text)]
    assert pieces[:5] == ["Hi", ",", "世", "界", "!"]
    assert pieces[5:7] == ["123", "45"]  # digits in groups of three
    assert "".join(pieces[7:]) == "internationalization"
    assert len(pieces[7:]) == 3  # a long word takes several pieces
    assert tok.count("") == 0 and tok.spans("   ") == []


def test_get_tokenizer_caches_and_defaults() -> None:
    assert get_tokenizer(None) is get_tokenizer("regex")
    assert get_tokenizer(None).name == "regex"
    assert isinstance(get_tokenizer(None), Tokenizer)
    hf = get_tokenizer("/nonexistent/tokenizer")
    assert isinstance(hf, HFTokenizer)  # nothing is loaded until it is used
    assert hf is get_tokenizer("/nonexistent/tokenizer")


def test_hf_tokenizer_missing_path_says_what_to_pass(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("transformers")
    tok = HFTokenizer(str(tmp_path / "no-such-tokenizer"))
    with pytest.raises(ValueError, match="tokenizer.json"):
        tok.count("hello")


def _save_local_hf_tokenizer(path) -> None:  # noqa: ANN001
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import models, pre_tokenizers, trainers

    backend = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]"])
    backend.train_from_iterator(english_document(20).split("\n\n"), trainer=trainer)
    # Settings a tokenizer.json may carry for model inputs; counting must ignore them.
    backend.enable_truncation(max_length=8)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", model_max_length=16
    )
    fast.save_pretrained(str(path))


def test_hf_tokenizer_from_local_path_handles_long_text(tmp_path, caplog) -> None:  # noqa: ANN001
    _save_local_hf_tokenizer(tmp_path)
    tok = get_tokenizer(str(tmp_path))
    assert isinstance(tok, HFTokenizer)
    text = english_document(20)
    with caplog.at_level(logging.WARNING):
        spans = tok.spans(text)
    assert not [r for r in caplog.records if "sequence length" in r.getMessage()]
    # Whitespace pre-tokenizer: words and punctuation marks, far past model_max_length=16.
    assert len(spans) == tok.count(text) > 1000
    assert text[spans[0][0] : spans[0][1]] == "In"
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))

    chunks = chunk_text(text, tokenizer=tok, chunk_tokens=64)
    assert all(c.n_tokens <= 64 for c in chunks)
    assert sum(c.n_tokens for c in chunks) == len(spans)


# --- chunking ---------------------------------------------------------------------------


def _assert_covers(text: str, chunks: list[Chunk]) -> None:
    assert chunks
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert c.text == c.text.strip()
    assert not text[: chunks[0].start].strip()
    assert not text[chunks[-1].end :].strip()
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end <= b.start
        assert not text[a.end : b.start].strip(), "only whitespace may lie between chunks"


@pytest.mark.parametrize("chunk_tokens", [16, 128, 4096])
def test_chunks_cover_text_within_budget(chunk_tokens: int) -> None:
    text = english_document(60)
    tok = get_tokenizer(None)
    chunks = chunk_text(text, tokenizer=tok, chunk_tokens=chunk_tokens)
    _assert_covers(text, chunks)
    assert all(1 <= c.n_tokens <= chunk_tokens for c in chunks)
    assert all(tok.count(c.text) <= chunk_tokens for c in chunks)
    assert sum(c.n_tokens for c in chunks) == tok.count(text)


def test_chunks_prefer_sentence_and_paragraph_ends() -> None:
    text = english_document(60)
    chunks = chunk_text(text, chunk_tokens=128)
    # Every paragraph is ~90 tokens with sentences of ~20: a sentence end always lies in the
    # last 15% (~19 tokens) of a 128-token window, so no chunk but the last stops mid-sentence.
    for c in chunks[:-1]:
        assert c.text[-1] in ".!?", c.text[-40:]
    # Paragraph breaks win over sentence ends when both are in reach.
    assert any(text[c.end : c.end + 2] == "\n\n" for c in chunks[:-1])


class _LeadingSpaceTokenizer:
    """SentencePiece-like offsets: each token carries the whitespace before it ("▁word")."""

    name = "leading-space"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\s*[\w]+|\s*[^\w\s]", text)]

    def count(self, text: str) -> int:
        return len(self.spans(text))


def test_chunks_find_sentences_with_leading_space_offsets() -> None:
    text = english_document(30)
    tok = _LeadingSpaceTokenizer()
    assert isinstance(tok, Tokenizer)
    chunks = chunk_text(text, tokenizer=tok, chunk_tokens=100)
    _assert_covers(text, chunks)
    assert all(c.n_tokens <= 100 for c in chunks)
    for c in chunks[:-1]:
        assert c.text[-1] in ".!?", c.text[-40:]


def test_chunks_fall_back_to_word_then_hard_cut() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(words, chunk_tokens=50)
    _assert_covers(words, chunks)
    assert all(c.n_tokens <= 50 for c in chunks)
    assert all(words[c.end : c.end + 1] in (" ", "") for c in chunks)  # ends on a word

    blob = "x" * 2000  # one "word": a cut inside it cannot be avoided
    chunks = chunk_text(blob, chunk_tokens=10)
    assert "".join(c.text for c in chunks) == blob
    assert all(c.n_tokens <= 10 for c in chunks)


def test_chinese_text_chunks_at_sentence_ends() -> None:
    text = chinese_document(40)
    chunks = chunk_text(text, chunk_tokens=128)
    _assert_covers(text, chunks)
    assert all(c.n_tokens <= 128 for c in chunks)
    assert len(chunks) > 5
    for c in chunks[:-1]:
        assert c.text[-1] in "。！？；", c.text[-10:]


def test_overlap_repeats_tokens_and_still_covers() -> None:
    text = english_document(20)
    plain = chunk_text(text, chunk_tokens=100)
    overlapping = chunk_text(text, chunk_tokens=100, overlap_tokens=20)
    assert len(overlapping) > len(plain)
    assert all(a.end > b.start for a, b in zip(overlapping, overlapping[1:], strict=False))
    assert overlapping[0].start == plain[0].start and overlapping[-1].end == plain[-1].end


def test_chunking_edge_cases() -> None:
    assert chunk_text("", chunk_tokens=10) == []
    assert chunk_text("  \n\n ", chunk_tokens=10) == []
    (only,) = chunk_text("  Short text.  ", chunk_tokens=10)
    assert (only.start, only.end, only.text, only.n_tokens) == (2, 13, "Short text.", 3)
    with pytest.raises(ValueError):
        chunk_text("abc", chunk_tokens=0)
    with pytest.raises(ValueError):
        chunk_text("abc", chunk_tokens=10, overlap_tokens=10)


def test_position_label() -> None:
    text = english_document(40)
    chunks = chunk_text(text, chunk_tokens=4096 // 4)
    labels = [position_label(c, len(text)) for c in chunks]
    assert labels[0].startswith("0%–")
    assert labels[-1].endswith("–100%")
    assert position_label(Chunk(0, 250, 500, "x", 1), 1000) == "25%–50%"
    assert position_label(Chunk(0, 0, 0, "", 0), 0) == "0%–100%"


# --- sentences and language -------------------------------------------------------------


def test_split_sentences_english_abbreviations_and_decimals() -> None:
    text = (
        "Dr. Smith paid 3.5 dollars at 4 p.m. on Monday. He said, e.g. the price was fair! "
        'Was it? "Yes." J. R. R. Tolkien wrote books, maps, etc. Then he rested...\n'
        "- first item\n- second item\n"
        "Heading\n"
        "This prose is hard-wrapped at a fixed width, as old e-texts are,\nacross two lines. End."
    )
    assert split_sentences(text) == [
        "Dr. Smith paid 3.5 dollars at 4 p.m. on Monday.",
        "He said, e.g. the price was fair!",
        "Was it?",
        '"Yes."',
        "J. R. R. Tolkien wrote books, maps, etc.",
        "Then he rested...",
        "- first item",
        "- second item",
        "Heading",
        "This prose is hard-wrapped at a fixed width, as old e-texts are, across two lines.",
        "End.",
    ]


def test_split_sentences_chinese() -> None:
    text = "他今天去了公园。天气很好！你去吗？我们明天再说；好的\n第二段的内容，价格是3.5元。"
    assert split_sentences(text) == [
        "他今天去了公园。",
        "天气很好！",
        "你去吗？",
        "我们明天再说；",
        "好的",
        "第二段的内容，价格是3.5元。",
    ]
    assert split_sentences(text, lang="zh") == split_sentences(text)


def test_split_sentences_empty_and_blank_lines() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\n ") == []
    assert split_sentences("One.\n\n\nTwo") == ["One.", "Two"]


def test_detect_language() -> None:
    assert detect_language(PARAGRAPH) == "en"
    assert detect_language(chinese_document(3)) == "zh"
    # Chinese prose that quotes English names is still Chinese.
    assert detect_language("我们使用 PyTorch 和 Hugging Face Transformers 训练了这个模型。") == "zh"
    assert detect_language("The word 中国 appears once in this long English sentence.") == "en"
    assert detect_language("") == "en"
    assert detect_language("12345 !!!") == "en"
