"""Text utilities: tokenizer-backed chunking, sentence splitting, language detection, the
canonical layout of an answer."""

from longreward.text.canonical import canonical_answer
from longreward.text.chunking import Chunk, chunk_text, position_label
from longreward.text.language import detect_language
from longreward.text.sentences import split_sentences
from longreward.text.tokenizers import HFTokenizer, RegexTokenizer, Tokenizer, get_tokenizer

__all__ = [
    "Chunk",
    "HFTokenizer",
    "RegexTokenizer",
    "Tokenizer",
    "canonical_answer",
    "chunk_text",
    "detect_language",
    "get_tokenizer",
    "position_label",
    "split_sentences",
]
