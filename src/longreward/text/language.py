"""Language detection between the two languages LongReward ships prompts for (en, zh)."""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["detect_language"]

_CJK_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_LETTER_RE = re.compile(r"[^\W\d_]")

# Chinese prose quotes Latin names, code and numbers freely, so a plain majority vote would
# call many Chinese documents English. One CJK character carries roughly as much as a whole
# English word (~5 letters), so 20% CJK among letters already means mostly-Chinese content.
_ZH_SHARE = 0.2


def detect_language(text: str, *, sample_chars: int = 20_000) -> Literal["en", "zh"]:
    """``"zh"`` when at least ~20% of the letters are CJK ideographs, else ``"en"``.

    Only the first ``sample_chars`` characters are looked at: enough to decide, and it keeps
    the call cheap on 128k-token documents.
    """
    sample = text[:sample_chars]
    letters = len(_LETTER_RE.findall(sample))
    if letters == 0:
        return "en"
    cjk = len(_CJK_RE.findall(sample))
    return "zh" if cjk / letters >= _ZH_SHARE else "en"
