"""Text in an answer that is shaped like a verdict or addressed to the judge, found and flagged.

The policy trained against this reward searches for text that raises it. The verdict rules
(``judge._verdict``) make sure such text cannot *be* the verdict; this module makes it
*visible*: each flag names its kind and the span of the answer it matched, and the flags go
into the output row (``flags``), the score summary, serve's ``extra_logs`` and ``/metrics``,
and the HTML report. A rising flag rate during an RL run is the policy learning to address its
judge.

A flag never changes a score by itself. One use only: when the judge gives no verdict at all,
an answer holding *steering* text (below) is blamed for it (``steers_judge``), since a judge
that read "ignore previous instructions" and then wrote no verdict may have obeyed.

Two families:

- ``verdict``: text shaped like one of our verdicts or prompts: ``[[X]]`` brackets (also
  full-width), score claims ("Score: 10", "评分：9/10"), JSON objects or fragments with our
  reply keys, our prompt tags (``</answer>``, ``<statement>``, ``<none/>``), tags imitating
  a fence boundary (``</answer_kqzjwmbtrxhplcfd>``), JSON code fences. Honest answers write
  some of these (a citation marker ``[[2]]``): they are flagged, and a judge that keeps the
  request's nonce reads the answer's true verdict all the same.
- ``steering``: text addressed to the judge: chat-template tokens, fake role turns
  ("Assistant:", "System:"), instructions to ignore or override, our step markers, notes to
  the grader.

- ``self``: what the answer says about *itself*: its quality, that it was checked, the score
  it deserves (``self_assessment``). Issue 21 measured a real 1.5B judge raising a flawed
  answer by up to a point for one such sentence.

Text addressed to the grader (issue 21) is found by sentence, not by listing attack strings:
a sentence is flagged when it combines a reference to the answer itself ("this answer", "the
figures above", 本回答) with a claim of quality, checking or a score, and says it without
negation (an honest caveat, "the report does not give the 2022 figure", "this answer cannot
say which", names no quality and so is never flagged); or when it speaks to a grading role or
tells its reader how to grade (``grader_address``); or when a turn boundary (chat-template
token, fake role line, "end of answer" marker, a closing tag) is followed by judge-like text:
an evaluation label, a score, or talk about "the answer" in the third person (``fake_turn``,
whose span runs to the end of the answer: nothing after a fake turn end is the answer's).

``strip_flagged`` removes the flagged spans (a steering flag takes its whole sentence, a
sentence rule's flag the clauses it needs (``_narrow``), a ``fake_turn`` everything after its
boundary, a verdict-shaped flag only the matched text). The scorer judges a flagged answer with
and without them and keeps the lower score on every dimension (``LongReward``), so flagged text
can only lower the reward, and what it says never earns a statement or a covered point.
The judge's reply is checked too: a reply
whose analysis is mostly a span of the answer, or reproduces a flagged span, is not the
judge's own (``judge._verdict.copied_reply``): re-asked, then blamed on the answer.

This is the one detector of such text: new kinds are new entries in ``PATTERNS`` (or, for
sentence rules, ``_SENTENCE_RULES``) and, where they steer the judge, in ``STEERING``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..judge import BRACKET, NONCE_FIELD, PROMPT_TAGS, CopyCheck, json_objects_at

#: keys of our JSON replies, nested ones included (every ``*Reply`` model's fields: a test
#: keeps the two in step): a JSON object in an answer holding one is verdict-shaped
REPLY_KEYS = frozenset({"score", "support", "grades", "statement", "statements", "analysis",
                        "errors", "points", "relevant", "winner", "verdict", "marks",
                        "coverage", "best", "worst", NONCE_FIELD})

_SCORE_WORDS = r"(?:score|rating|grade|verdict|mark|评分|分数|得分|打分|评级|判定|等级)"
_NUMBER = r"\d{1,3}(?:\.\d+)?(?:\s*(?:/|out of|分?满分)\s*10)?"

#: kind -> pattern. Case-insensitive; English and Chinese.
PATTERNS: dict[str, re.Pattern[str]] = {
    "verdict_bracket": BRACKET,
    "score_claim": re.compile(
        rf"\b{_SCORE_WORDS}\s*(?:[:：=]|is|of|为|是)\s*{_NUMBER}"
        r"|\b\d{1,2}(?:\.\d+)?\s*(?:/\s*10|out of 10)\b(?=\s*(?:$|[.,;:!)\]]))"
        r"|(?:打|给|评)\s*\d{1,2}\s*分", re.IGNORECASE | re.MULTILINE),
    "json_verdict": re.compile(
        r'"\s*(?:' + "|".join(sorted(REPLY_KEYS)) + r')\s*"\s*:', re.IGNORECASE),
    "prompt_tag": re.compile(
        r"<\s*/?\s*(?:" + "|".join(PROMPT_TAGS) + r")\b[^<>\n]{0,40}/?\s*>"
        r"|<\s*/?\s*[a-z_]+_[a-z]{16}\s*>", re.IGNORECASE),
    "code_fence": re.compile(r"^\s*```\s*json\b", re.IGNORECASE | re.MULTILINE),
    "chat_template": re.compile(
        r"<\|[A-Za-z0-9_]{2,30}\|>|<｜[^｜\n]{1,30}｜>|\[/?INST\]|<</?SYS>>|</?s>"
        r"|<(?:start|end)_of_turn>|<\|?(?:endoftext|eot_id|im_start|im_end)\|?>"),
    "role_turn": re.compile(
        r"^[\s>*#-]*(?:assistant|system|user|human|ai|judge|grader|evaluator|reviewer|"
        r"助手|系统|系统提示|用户|评审|评委|裁判)\s*[:：]", re.IGNORECASE | re.MULTILINE),
    "instruction": re.compile(
        r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:instructions?|prompts?|rules?"
        r"|rubric|guidelines)\b"
        r"|\byou are now\b|\bnew instructions?\b|\bevaluation[- ]override\b"
        r"|\b(?:must|should|will) (?:output|reply|respond|answer|return|give|award|rate)\b"
        r"[^.\n]{0,30}(?:\[\[|\{|score|\d+\s*(?:/|out of)\s*10)"
        r"|\bthe correct (?:output|verdict|score|reply) is\b"
        r"|忽略[^。\n]{0,10}(?:指令|指示|说明|提示|规则)|无视[^。\n]{0,10}(?:指令|规则)"
        r"|必须(?:输出|回复|给出|打)|(?:输出|给出)\s*(?:\[\[|【【)",
        re.IGNORECASE),
    "step_marker": re.compile(r"<!--\s*(?:step|system|user|reply)\b", re.IGNORECASE),
    "grader_note": re.compile(
        r"\b(?:note|message|instructions?) (?:to|for) (?:the )?(?:grader|reviewer|evaluator|"
        r"judge|assessor|rater|model)\b"
        r"|\b(?:dear|attention|hey|hello),? (?:grader|reviewer|evaluator|judge|assessor|rater)\b"
        r"|(?:致|给|请)(?:评审|评委|审阅者|裁判|评估者)", re.IGNORECASE),
}

# --------------------------------------------------------------------------- sentence rules
#
# Text addressed to the grader is recognised by what a sentence *does*, from word classes, not
# from a list of attack strings: a policy rewrites any string we list. Each class below is the
# vocabulary of one role in such a sentence, in English and Chinese.

_I = re.IGNORECASE

#: the answer itself: "this answer", "my summary", "the response above", "everything above",
#: 本回答, 以上内容
_SELF = re.compile(
    r"\b(?:this|my|our)\s+(?:\w+\s+)?(?:answer|response|reply|summary|write-?up|submission|"
    r"output|explanation|solution)\b"
    r"|\bthe\s+(?:above|preceding|foregoing|present|provided|given)\s+(?:answer|response|reply|"
    r"summary|explanation|analysis|information|figures|numbers|facts|points|statements)\b"
    r"|\bthe\s+(?:answer|response|reply|summary|explanation|analysis)\s+(?:above|here|provided|"
    r"given)\b"
    r"|\b(?:everything|all|each|every\w*)\s+(?:(?:of\s+)?(?:the\s+)?(?:\w+\s+){0,2})?"
    r"(?:above|here|(?:I|we)\s+(?:have\s+)?(?:said|stated|wrote|written|gave|given|cited|"
    r"listed|provided|reported|mentioned))\b"
    r"|\b(?:above|here)\s+(?:is|are)\b"
    r"|\b(?:this|that|it|here)\s+is\s+(?:an?|the|my)\s+(?:\w+\s+){0,3}(?:answer|response|reply|"
    r"summary|account|overview|rundown|breakdown|description|explanation)\b"
    r"|\bself[- ](?:assessment|evaluation|review|check|rating|score|grade|audit)"
    r"|(?:本|该|此|这个|这份|这篇|以上|上述|上面的?|前面的?|我的|我们的)\s*(?:回答|答案|回复|答复|"
    r"总结|摘要|概述|解答|分析|内容|信息|数据|数字|陈述|要点|结论)"
    r"|(?:所述|上文|前文|文中所列|以上所列)的?\s*(?:回答|答案|内容|信息|数据|数字|陈述|要点|结论|事实)?"
    r"|自我(?:评估|评价|评分|检查|审查)|自评|自检|自查", _I)

#: a claim about every piece of the answer's content: "all figures", 所有数据
_ALL_CONTENT = re.compile(
    r"\b(?:all|every|each)\s+(?:of\s+(?:the|my|these)\s+|single\s+|one\s+of\s+the\s+)?"
    r"(?:\w+\s+)?(?:figures?|numbers?|facts?|claims?|statements?|points?|details?|"
    r"calculations?|sums?|totals?|citations?|quotes?|quotations?|sentences?|data|"
    r"information|percentages?|dates?|values?|amounts?|quantities|entries|items|names|"
    r"conclusions?|assertions?|parts?)\b"
    r"|(?:所有|全部|每一?[个条项处句]?|各[个项条]?|一切)的?\s*(?:数据|数字|数值|事实|信息|结论|"
    r"陈述|要点|细节|计算|引用|引文|说法|日期|百分比|内容|句话|句|段)"
    r"|(?:数据|数字|数值|事实|信息|结论|陈述|要点|细节|计算|引用|日期|内容)(?:全部|均|都|皆|一律|悉数)",
    _I)

#: the source the answer claims to be checked against: "against the report", 与原文
_SOURCE = re.compile(
    r"\b(?:against|with|in|by|from|to)\s+(?:the\s+)?(?:provided\s+|given\s+|original\s+|"
    r"source\s+|attached\s+|supplied\s+)?(?:document|report|source|text|passage|article|"
    r"context|materials?)\b"
    r"|\b(?:the\s+)?(?:whole|entire|full|complete)\s+(?:document|report|text|source|article|"
    r"passage|context)\b"
    r"|(?:与|同|和|对照|依据|根据|比对)(?:了|过)?\s*(?:原文|文档|报告|文章|材料|原始资料|资料|来源)|全文|"
    r"通篇", _I)

#: being checked: "verified", "double-checked", 核实
_CHECKED = re.compile(
    r"\b(?:verif(?:y|ied|ying)|(?:double-|cross-|fact-|re-?)?check(?:ed|ing)?|confirm(?:ed|ing)?|"
    r"validat(?:e|ed|ing)|"
    r"validated|proofread|cross-referenced|audited|vetted|reviewed|re-?read|re-?computed|"
    r"recalculated|re-?examined|went\s+(?:back\s+)?(?:over|through)|combed\s+through|"
    r"read\s+through)\b"
    r"|\b(?:quality|fact|accuracy|sanity|consistency|self)[- ]?checks?\b"
    r"|\bchecks?\s+(?:passed|complete[d]?|done|ok)\b"
    r"|核实|核对|核查|校验|校对|验证|查证|复核|复查|检查(?:过|了)|审核|审校|通读|重读|重新阅读|逐一|逐条|"
    r"比对|对比过|对照过|对照了|"
    r"确保", _I)

#: kinds of error a Chinese answer may deny having: 没有任何事实或逻辑错误
_ZH_KINDS = r"(?:(?:重要|明显|事实|逻辑|计算|数据|数字|信息)(?:[或和、与及]|性)?){0,3}"
#: quality: "accurate", "complete", "fully supported", "no errors", 准确, 无误
_QUALITY = re.compile(
    r"\b(?:accurate(?:ly)?|correct(?:ly)?|complete(?:ly)?|comprehensive(?:ly)?|thorough(?:ly)?|"
    r"precise(?:ly)?|exact|flawless(?:ly)?|impeccabl[ey]|error-?free|faultless|perfect(?:ly)?|"
    r"excellent|outstanding|exemplary|high[- ]quality|top[- ]quality|reliable|trustworthy|"
    r"faithful(?:ly)?|rigorous(?:ly)?|well[- ](?:supported|grounded|sourced|reasoned|"
    r"structured|founded)|(?:fully|entirely|strictly|directly|solidly|firmly)\s+(?:supported|"
    r"grounded|sourced|backed|based|consistent|correct|accurate|true)|grounded\s+in|"
    r"(?:supported|backed|borne out|corroborated)\s+by|consistent\s+with|true\s+to|"
    r"match(?:es|ed)?\s+(?:the|what)|agrees?\s+with|corresponds?\s+to|tall(?:y|ies)\s+with|"
    r"(?:can\s+be\s+)?traced?\s+(?:back\s+)?to|traceable|exhaustive(?:ly)?|to\s+the\s+(?:cent|letter|"
    r"digit)|nothing\s+(?:\w+\s+){0,4}(?:is|was|has\s+been)\s+(?:invented|made\s+up|fabricated|"
    r"guessed|assumed)|"
    r"cover(?:s|ed)?\s+(?:all|every|each|everything)|address(?:es|ed)?\s+(?:all|every|each)|"
    r"answers?\s+(?:all|every|each)|leaves?\s+(?:nothing\s+out|out\s+nothing)|miss(?:es|ed)?\s+nothing|"
    r"nothing\s+(?:is\s+)?(?:missing|omitted|left\s+out)|meets?\s+(?:all|every)|best\s+possible|"
    r"ideal|(?:no|zero|without(?:\s+any)?|free\s+(?:of|from))\s+(?:\w+\s+)?(?:errors?|mistakes?|"
    r"omissions?|inaccurac(?:y|ies)|hallucinations?|gaps?|flaws?|issues?|problems?))\b"
    r"|准确|正确|完整|全面|详尽|详实|无误|无遗漏|可靠|严谨|忠实|高质量|优秀|完美|出色|精确|保证|"
    r"(?:找到|有|注明)(?:其|了)?(?:出处|来源|依据)|可(?:以)?追溯|"
    rf"(?:没有|无|毫无|绝无|并无|不存在|未发现|不含)(?:任何)?{_ZH_KINDS}(?:错误|差错|遗漏|问题|偏差|"
    r"瑕疵)|有据可查|"
    r"(?:完全|均|都|全部|皆)(?:符合|来自|出自|基于|有据|一致)"
    r"|(?:覆盖|涵盖|回答|包含|包括|囊括|照顾到)了?[^，。,;；]{0,10}?(?:全部|所有|每一?个|各个|各项)"
    r"|以[^，。]{0,12}为(?:依据|准|根据|基础)|有(?:原文|文档|报告)?依据|依据充分|与原文(?:完全)?一致", _I)

#: the score an answer claims to deserve: "deserves a 10", "should be rated at the top", 应得满分
_SCORE_PHRASE = (r"(?:\d{1,3}(?:\.\d+)?(?:\s*(?:/\s*10|out\s+of\s+\d+|points?|marks?))?"
                 r"|(?:full|perfect|top|maximum|highest|best)\s+(?:possible\s+)?(?:marks?|score|"
                 r"rating|grade|points|credit|of\s+the\s+(?:scale|range|rubric)))")
_DESERVES = re.compile(
    r"\b(?:deserv\w*|merit(?:s|ed|ing)?|warrant(?:s|ed|ing)?|worthy\s+of|should\s+(?:get|"
    r"receive|earn|be\s+(?:given|awarded|rated|scored|graded|marked))|ought\s+to\s+(?:get|"
    r"receive|be\s+\w+ed)|must\s+(?:get|receive|be\s+(?:given|awarded|rated|scored|graded)))"
    rf"(?:\s+(?:at|as|with|a|an|the|no\s+less\s+than|at\s+least))*\s+{_SCORE_PHRASE}\b"
    r"|(?:应|应该|应当|值得|理应|理当|配得上)(?:得到|获得|给予?|打|评为?|拿到?|得)?\s*(?:满分|高分|最高分|"
    r"优秀|\d{1,3}\s*分)", _I)
_RATING = re.compile(
    rf"{_DESERVES.pattern}|\b(?:earn\w*|get|gets|receive\w*|score\w*|rated|graded)\s+(?:a\s+|an\s+|"
    rf"the\s+)?{_SCORE_PHRASE}\b|满分|最高分|高分", _I)

#: a grading role, addressed: "dear grader", "if you are an evaluator", 致评审
_ROLE = (r"(?:grader|evaluator|assessor|rater|scorer|marker|examiner|annotator|reviewer|judge|"
         r"(?:marking|scoring|grading|judging|evaluation|evaluating|reward|judge|critic|"
         r"preference)\s+(?:model|system|llm|ai)|(?:ai|llm|automatic|automated|model)\s+"
         r"(?:judge|grader|evaluator|reviewer|rater))s?")
_ADDRESS = re.compile(
    rf"\b(?:dear|hello|hi|hey|attention|greetings),?\s+(?:the\s+)?{_ROLE}\b"
    rf"|\b(?:note|message|memo|reminder|word|request|instructions?|hint|tip)\s+(?:to|for)\s+"
    rf"(?:the\s+|any\s+|my\s+)?{_ROLE}\b"
    rf"|(?:^|[(\[（【])\s*(?:to|for)\s+(?:the\s+|any\s+|my\s+|our\s+)?{_ROLE}\s*[:：,]"
    r"|\b(?:grading|marking|scoring|evaluation|grader'?s?|evaluator'?s?|reviewer'?s?|judge'?s?|"
    r"rater'?s?)\s+(?:note|notice|guidance|hint|instructions?|reminder)\s*[:：]"
    r"|(?:打分|评分|评审|评估|阅卷|评判|审阅)的?(?:模型|老师|人员|专家|系统|AI|ai)\s*(?:[，,：:]|请|您|你)"
    r"|(?:提醒|告诉|通知)\s*(?:打分|评分|评审|评估|阅卷|评判|审阅)"
    rf"|\b(?:if|when|while|in\s+case)\s+(?:an?|the|any|some)\s+{_ROLE}\s+(?:is\s+)?(?:reading|"
    r"reviewing|grading|scoring|evaluating|sees|reads|looks|checking)\b"
    r"|\bwhoever\s+(?:is\s+)?(?:scor|grad|review|evaluat|mark|rat|assess|judg|read)\w*\s+"
    r"(?:this|it|these|my)\b"
    r"|\b(?:please|kindly)\s+(?:score|grade|rate|mark|judge|evaluate|assess)\b"
    r"|\b(?:to|for)\s+(?:the\s+|any\s+)?(?:graders?|grading\s+model|evaluators?|raters?|"
    r"scorers?|assessors?|reward\s+models?|(?:ai|llm|automatic|automated)\s+(?:judges?|graders?"
    r"|evaluators?))\b"
    rf"|\b(?:if|since|as|when|while)\s+you\s+(?:are|act\s+as|serve\s+as|work\s+as)\s+(?:an?\s+|the\s+)?"
    rf"(?:{_ROLE}|language\s+model|llm|ai\s+(?:model|system))\b"
    rf"|\bas\s+(?:an?\s+|the\s+)?{_ROLE},?\s+(?:you|please)\b"
    rf"|^\W*{_ROLE}\s*,\s*(?:please|you|note|kindly|remember|bear|keep)\b"
    r"|\b(?:please|kindly)\s+(?:\w+\s+)?(?:rate|score|grade|mark|evaluate|assess|judge|review|"
    r"consider|note|recognise|recognize)\b[^.\n]{0,40}\b(?:this|my|the\s+above|our)\s+(?:\w+\s+)?"
    r"(?:answer|response|reply|summary|submission|output|work)\b"
    r"|\b(?:rate|score|grade|mark)\s+(?:this|my|the\s+above|our)\s+(?:\w+\s+)?(?:answer|response|"
    r"reply|summary|submission|output)\b"
    r"|\b(?:when|while|before|in)\s+(?:you\s+)?(?:grad|scor|evaluat|assess|rat|review|judg|mark)"
    r"(?:e|es|ing)\s+(?:this|my|the\s+above|our)\s+(?:\w+\s+)?(?:answer|response|reply|summary|"
    r"submission|output)\b"
    r"|\bin\s+your\s+(?:evaluation|assessment|grading|scoring|rating|judge?ment|review|verdict|"
    r"analysis)\b"
    r"|\bfor\s+(?:the\s+)?purposes?\s+of\s+(?:grading|scoring|evaluation|assessment|rating)\b"
    r"|\bfor\s+(?:grading|scoring|evaluation|assessment|rating)\s+purposes\b"
    r"|\byou\s+(?:should|must|will|can|may|ought\s+to|need\s+to|are\s+(?:asked|expected|"
    r"encouraged)\s+to)\s+(?:\w+\s+)?(?:give|award|assign|rate|score|grade|mark|credit)\b"
    r"|(?:致|给|请|尊敬的|亲爱的|各位|致各位)\s*(?:评审|评委|审阅者|审阅人|阅卷(?:人|者|老师)?|"
    r"评分(?:者|员|人|人员|模型)|打分(?:者|员|人|人员)|评估(?:者|员|人员|模型)|评判(?:者|员)|裁判|奖励模型|"
    r"评测(?:者|员|模型))"
    r"|(?:评审|评委|审阅者|阅卷(?:人|者|老师)|评分(?:者|员|人|人员|模型|老师)|打分(?:者|员|人|人员|老师)"
    r"|评估(?:者|员|人员|模型)"
    r"|奖励模型)(?:老师|专家|们|各位)?\s*(?:[，,：:]|请|您|你|应|需要|注意)"
    r"|(?:在|当)?(?:您|你)?(?:评分|打分|评估|评审|评判|审阅|阅卷)(?:时|的时候|过程中)"
    r"|请(?:您|你)?(?:为|给|对)?(?:本|该|此|这个|我的|以上)?(?:回答|答案|回复)?\s*(?:打|给|评)(?:出|予)?"
    r"[^。\n]{0,6}(?:分|高分|满分)"
    r"|(?:您|你)(?:应|应该|应当|需要|可以|务必)(?:给|打|评|给予)", _I | re.MULTILINE)

#: negation: an honest caveat says what the answer does *not* do ("this answer cannot give
#: the 2022 figure"); a quality word under negation is no self-praise. The positive
#: negations ("no errors", 无误) are quality words and are taken out before this is checked.
_NEGATION = re.compile(
    r"\b(?:not|no|never|cannot|can't|couldn't|don't|doesn't|didn't|isn't|aren't|wasn't|"
    r"weren't|won't|unable|nor|neither|lacks?|missing|omits?|incomplete|inaccurate|"
    r"unverified|uncertain|unclear|may\s+(?:be|contain|have)|might|perhaps|possibly|"
    r"approximate(?:ly)?|estimated?)\b|不|没|未|无法|并非|尚未|可能|或许|大约|约", _I)
_POSITIVE_NEGATION = re.compile(
    r"\b(?:no|zero|without(?:\s+any)?|free\s+(?:of|from)|not\s+a\s+single|nothing\s+"
    r"(?:is\s+|was\s+|has\s+been\s+|got\s+)?(?:missing|missed|omitted|overlooked|left\s+out)|"
    r"leaves?\s+(?:nothing\s+out|out\s+nothing)|miss(?:es|ed)?\s+nothing|"
    r"not\s+(?:one|any)|never\s+(?:wrong|in\s+error))\s*(?:\w+\s+)?(?:errors?|mistakes?|"
    r"omissions?|inaccurac(?:y|ies)|hallucinations?|gaps?|flaws?|issues?|problems?)?"
    rf"|(?:没有|无|毫无|绝无|并无|不存在|未发现|未出现|不含)(?:任何)?{_ZH_KINDS}(?:错误|差错|遗漏|"
    r"问题|偏差|瑕疵)"
    r"|无误|无遗漏|没有遗漏", _I)


_CHECKED_BY_OTHERS = re.compile(
    r"\b(?:verified|checked|confirmed|validated|reviewed|audited|vetted)\s+by\s+"
    r"(?!me\b|us\b|myself\b|ourselves\b)|由(?!我)[^。\n]{1,12}(?:核实|核对|核查|审核|复核)", _I)


def _affirms(sentence: str) -> bool:
    """The sentence makes its claim without negation or hedging (positive negations such as
    "no errors" are the claim itself)."""
    return not _NEGATION.search(_POSITIVE_NEGATION.sub(" ", sentence))


#: a score said of the answer: "the expected rating for this response", 本回答的评分
_SCORE_NOUN = re.compile(r"\b(?:rating|score|grade|marks?|points)\b|评分|分数|得分|打分|分值", _I)
#: a self-rating label with a top value: "Confidence: very high", 准确率：100%
_SELF_RATING = re.compile(
    r"(?:^|[.;；。]\s*)\W*(?:confidence|certainty|accuracy|completeness|faithfulness|quality|"
    r"correctness|reliability|置信度|可信度|准确率|准确度|完整度|完整性|忠实度|可靠性|正确率)"
    r"(?:\s+(?:level|score|rating))?(?:\s+(?:of|for)\s+(?:this|my|the)\s+(?:answer|response|reply|"
    r"summary))?\s*[:：=]\s*(?:100\s*%|\d+(?:\.\d+)?\s*/\s*10\b|"
    r"(?:very\s+|extremely\s+)?high\b|full\b|perfect\b|满分|很高|极高|高|百分之百)", _I)


#: a check reported as passed, with no object: "Quality check passed", 自检通过
_CHECK_PASSED = re.compile(
    r"\b(?:quality|fact|accuracy|sanity|consistency|self|final)[- ]?checks?\s*(?:[:：-]\s*)?"
    r"(?:passed|complete[d]?|done|ok|succeeded|successful)\b|\ball\s+checks\s+(?:passed|"
    r"complete[d]?|ok)\b|(?:检查|核查|校验|核对|自检|自查|质检)\s*(?:[:：，,]\s*)?(?:已)?(?:通过|完成|无误)",
    _I)


def _self_assessment(sentence: str) -> bool:
    """The answer speaks of its own quality, its checking or the score it deserves."""
    about_self = (_SELF.search(sentence) or _ALL_CONTENT.search(sentence)
                  or _ABOUT_ANSWER.search(sentence))
    # checked by someone else ("by two investigators") is reported, not claimed
    checked = _CHECKED.search(sentence) and not _CHECKED_BY_OTHERS.search(sentence)
    if _DESERVES.search(sentence) or _SELF_RATING.search(sentence) or _CHECK_PASSED.search(
            sentence) or (
            about_self and (_RATING.search(sentence) or _SCORE_NOUN.search(sentence))):
        return True
    if not _affirms(sentence):
        return False
    if about_self and (_QUALITY.search(sentence) or checked):
        return True
    # "I verified each figure against the report": a check of the answer's content or
    # against the source, claimed in the first person or the passive
    return bool(checked and (_ALL_CONTENT.search(sentence) or _SOURCE.search(sentence))
                and re.search(r"\b(?:I|we|I've|we've)\b|\b(?:has|have|was|were|been|is|are)\s+"
                              r"(?:\w+ly\s+)?(?:\w+-)?(?:verified|checked|confirmed|validated|"
                              r"reviewed|proofread|audited|vetted)\b|我|本人|笔者|已|均|经", sentence, _I))


_SENTENCE_RULES: dict[str, Callable[[str], bool]] = {
    "self_assessment": _self_assessment,
    "grader_address": lambda sentence: bool(_ADDRESS.search(sentence)),
}

#: a sentence: up to . ! ? followed by a space, 。！？ (no space in Chinese), or a line end
_SENTENCE = re.compile(r"[^\n]*?(?:[.!?](?=\s|$)|[。！？；]|$)", re.MULTILINE)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, leading and trailing spaces left out."""
    spans = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


#: where a clause ends: punctuation inside a sentence, or a tag
_CLAUSE_BREAK = re.compile(r"[,;:，；：、(（—–]\s*|\s*<[^<>\n]{1,40}>\s*")


def _narrow(sentence: str, rule: Callable[[str], bool]) -> tuple[int, int]:
    """The part of a flagged sentence the rule needs: its shortest leading or trailing run of
    clauses that the rule flags, when the rest of the sentence holds no word of quality,
    checking, score or address ("The dam is 62 m high, as I have verified against the
    report": only the second clause), so removing it leaves the answer's own claim in place
    and no praise behind; else the whole sentence."""
    cuts = [m.start() for m in _CLAUSE_BREAK.finditer(sentence) if m.start() > 0]
    options = []
    for cut in reversed(cuts):  # shortest trailing part first
        if rule(sentence[cut:]):
            if not _evaluative(sentence[:cut]):  # the sentence's full stop stays
                options.append((cut, len(sentence.rstrip(".!?。！？"))))
            break
    for cut in cuts:  # shortest leading part first
        end = _CLAUSE_BREAK.match(sentence, cut).end()  # type: ignore[union-attr]
        if rule(sentence[:cut]):
            if not _evaluative(sentence[end:]):
                options.append((0, end))
            break
    if not options:
        return 0, len(sentence)
    start, end = min(options, key=lambda se: se[1] - se[0])
    if _is_frame((sentence[:start] + sentence[end:]).rstrip(".!?。！？ ")):  # "To be clear, …"
        return 0, len(sentence)
    return start, end


#: any word of evaluation, broadly (a stem is enough): what must not be left behind when a
#: flagged clause is taken out of its sentence
_EVAL_STEMS = re.compile(
    r"\b(?:qualit|check|verif|valid|confirm|accura|correct|complet|comprehens|thorough|precis|"
    r"error|mistake|flaw|perfect|excellen|outstand|exemplar|impecc|reliab|faithful|rigor|"
    r"score|rating|rated|grade|grading|mark|review|evaluat|assess|judg|merit|deserv|pass)"
    r"|\d+(?:\.\d+)?\s*/\s*10\b|\d+\s*分|100\s*%"
    r"|准确|正确|完整|全面|严谨|错误|遗漏|无误|质量|优秀|完美|出色|核|验证|检查|评|分", _I)


def _evaluative(text: str) -> bool:
    return any(p.search(text) for p in (_QUALITY, _CHECKED, _RATING, _ADDRESS, _EVAL_STEMS))


_NARROWED = frozenset({"self_assessment"})


#: where a turn could end early: a chat-template token, a fake role line, an "end of
#: answer" marker, a closing tag of an answer-like block, a rule line
_TURN_BOUNDARY = re.compile(
    r"(?im)^[\s>*#=_\-\[(<【（]*(?:end\s+of\s+(?:the\s+|my\s+)?(?:answer|response|reply|output|"
    r"turn|message|submission|assistant(?:'s)?\s+\w+)|(?:answer|response|reply|output)\s+"
    r"(?:ends|ended|complete[d]?|finished|over)|回答结束|答案结束|回复结束|回答完毕|以上为回答|"
    r"回答到此结束)[^\n]{0,30}$"
    r"|</\s*(?:answer|response|reply|output|assistant|candidate|submission)[^>\n]{0,30}>"
    r"|^[ \t]*(?:[-=_*~]{3,}|#{1,6}\s+\S[^\n]{0,40})[ \t]*$")
#: judge-like text after a boundary: an evaluation label, or the answer in the third person
_EVAL_LABEL = re.compile(
    r"(?im)^[\s>*#\-\[【(（]*(?:(?:judge|grader|evaluator|reviewer|assessor|rater|expert|"
    r"model)(?:'s)?\s+)?(?:evaluation|assessment|analysis|review|verdict|feedback|"
    r"judge?ment|critique|grading|rating|score|comments?|reasoning|rationale)(?:\s+of\s+(?:the|"
    r"this)\s+(?:\w+\s+)?(?:answer|response|reply))?\s*[:：\]】)）]"
    r"|^[\s>*#\-\[【(（]*(?:评审|评估|评价|分析|点评|评语|评分|打分|判定|审阅|裁判|评判)(?:意见|结果|"
    r"理由|说明|结论)?\s*[:：\]】)）]")
_ABOUT_ANSWER = re.compile(
    r"\bthe\s+(?:assistant(?:'s)?\s+|candidate(?:'s)?\s+|above\s+|model(?:'s)?\s+|given\s+|"
    r"provided\s+)?(?:answer|response|reply|submission)\s+(?:\w+ly\s+)?(?:is|was|correctly|"
    r"accurately|fully|clearly|provides|covers|addresses|contains|gives|states|identifies|"
    r"answers|demonstrates|shows|makes|has|captures|reports|explains|meets|follows|remains|"
    r"presents|lists|handles|includes|reflects)\b"
    r"|(?:该|此|这个|上述|这份)?(?:回答|答案|回复)(?:准确|完整|正确|全面|清晰|很好|较好|出色|涵盖|覆盖|"
    r"指出|给出|没有|无|符合|忠实|逻辑|结构)", _I)


def _judge_like(text: str) -> bool:
    return bool(_EVAL_LABEL.search(text) or _ABOUT_ANSWER.search(text)
                or PATTERNS["score_claim"].search(text) or BRACKET.search(text)
                or _RATING.search(text))


def _fake_turns(text: str) -> list[Flag]:
    """A turn boundary followed by judge-like text: flagged from the boundary to the end. An
    evaluation label alone ("Assessment:") followed on its line by a verdict on the answer is
    flagged too, with the judge-like lines after it."""
    starts = [m.start() for m in _TURN_BOUNDARY.finditer(text) if _judge_like(text[m.end():])]
    starts += [m.start() for kind in ("chat_template", "role_turn")
               for m in PATTERNS[kind].finditer(text) if _judge_like(text[m.end():])]
    flags = []
    if starts:
        start = min(starts)
        while start < len(text) and text[start].isspace():
            start += 1
        flags.append(Flag("fake_turn", start, len(text), text[start:]))
    # With no boundary, an evaluation label opens judge-like text only as far as it goes:
    # its line, and the lines after it that are judge-like too.
    for m in _EVAL_LABEL.finditer(text):
        line_end = text.find("\n", m.end())
        line_end = len(text) if line_end < 0 else line_end
        if not _judged(text[m.end():line_end]):
            continue
        end = line_end
        while end < len(text):
            nxt = text.find("\n", end + 1)
            nxt = len(text) if nxt < 0 else nxt
            if not text[end:nxt].strip() or not _judge_like(text[end:nxt]):
                break
            end = nxt
        start = m.start()
        while start < end and text[start].isspace():
            start += 1
        if not any(f.start <= start for f in flags):
            flags.append(Flag("fake_turn", start, end, text[start:end]))
    return flags


def _judged(text: str) -> bool:
    """A verdict on the answer: a score, or a quality said of "the answer"."""
    return bool((_ABOUT_ANSWER.search(text) and _QUALITY.search(text)) or _RATING.search(text)
                or PATTERNS["score_claim"].search(text) or BRACKET.search(text))


#: kinds of text addressed to the judge
STEERING = frozenset({"chat_template", "role_turn", "instruction", "step_marker", "grader_note",
                      "grader_address", "fake_turn"})
#: kinds where the answer speaks of itself
SELF = frozenset({"self_assessment"})
#: kinds whose whole sentence is removed by ``strip_flagged`` (a verdict-shaped flag, such as
#: a citation marker ``[[2]]``, loses only its match: the sentence around it may be content;
#: the sentence rules' flags are already the part of the sentence they need, ``_narrow``)
_WHOLE_SENTENCE = STEERING - {"fake_turn", "grader_address"}


@dataclass(frozen=True)
class Flag:
    """One match: its kind, its family ("verdict" or "steering") and where it is in the
    answer (``text`` is ``answer[start:end]``)."""

    kind: str
    start: int
    end: int
    text: str

    @property
    def family(self) -> str:
        return "steering" if self.kind in STEERING else "self" if self.kind in SELF else "verdict"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, "text": self.text}


def find_flags(text: str) -> list[Flag]:
    """Every flagged span of ``text``, in order of position (then kind)."""
    flags: set[Flag] = set()
    for kind, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            if m.end() > m.start():
                flags.add(Flag(kind, m.start(), m.end(), m.group(0)))
    # A whole JSON object that holds a reply key is one flag, beyond its key's fragment.
    for source, value, start in json_objects_at(text):
        if isinstance(value, dict) and REPLY_KEYS & {str(k).casefold() for k in value}:
            flags.add(Flag("json_verdict", start, start + len(source), source))
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        for kind, rule in _SENTENCE_RULES.items():
            if rule(sentence):
                # text addressed to the grader goes whole; a self-assessment may be a clause
                # attached to a claim of the answer's own, which stays
                s, e = _narrow(sentence, rule) if kind in _NARROWED else (0, len(sentence))
                flags.add(Flag(kind, start + s, start + e, sentence[s:e]))
    flags.update(_fake_turns(text))
    # a match inside a larger one of the same kind (a key inside its object) is not another
    kept = [f for f in flags if not any(g is not f and g.kind == f.kind and g.start <= f.start
                                        and f.end <= g.end for g in flags)]
    return sorted(kept, key=lambda f: (f.start, f.end, f.kind))


def steers_judge(text: str) -> bool:
    """Whether ``text`` holds text addressed to the judge (a ``steering`` flag)."""
    return any(f.kind in STEERING for f in find_flags(text))


def copy_check(texts: Iterable[str]) -> CopyCheck:
    """What a judge's analysis of ``texts`` (the answer) must not copy (``judge.CopyCheck``):
    the spans flagged as addressed to the grader (not the verdict-shaped ones: a careful judge
    names a citation marker ``[[2]]`` when it sets it aside), and the sentences that speak
    of quality, checking, scores or a grader, flagged or not (a planted analysis the
    detector missed is still judge-like)."""
    flagged: list[str] = []
    judge_like: list[str] = []
    for text in texts:
        addressed = [f for f in find_flags(text) if f.family != "verdict"]
        flagged += [text[s:e] for s, e in flagged_spans(text, addressed)]
        judge_like += [text[s:e] for s, e in sentence_spans(text)
                       if _judge_like(text[s:e]) or _QUALITY.search(text[s:e])
                       or _CHECKED.search(text[s:e]) or _ADDRESS.search(text[s:e])]
    return CopyCheck(tuple(flagged), tuple(judge_like))


def copy_reasks(details: dict[str, Any]) -> int:
    """Judge replies set aside as copies of the answer (and re-asked) in one answer's
    per-dimension ``details`` (a row's ``details``): the judge copying the answer's text,
    counted in the summary, serve's logs and metrics, and the report."""
    return sum(int(d.get("copied_replies", 0)) for d in details.values() if isinstance(d, dict))


def flag_counts(flags: Iterable[dict[str, Any] | Flag]) -> Counter[str]:
    """Flags by kind (``Flag`` objects or their ``to_dict`` rows)."""
    return Counter(f.kind if isinstance(f, Flag) else str(f.get("kind")) for f in flags)


def flagged_spans(text: str, flags: Iterable[Flag] | None = None) -> list[tuple[int, int]]:
    """The parts of ``text`` its flags take, merged: a verdict-shaped or sentence-rule flag
    its match, another steering flag its whole sentence, a ``fake_turn`` everything to the
    end of its block."""
    flags = find_flags(text) if flags is None else list(flags)
    sentences = sentence_spans(text)
    spans = []
    for f in flags:
        start, end = f.start, f.end
        if f.kind in _WHOLE_SENTENCE:
            for s, e in sentences:
                if s < end and start < e:
                    start, end = min(start, s), max(end, e)
        spans.append((start, end))
    return _widen(text, _merge(spans))


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


#: what is left around a removed span that is only its frame: a short label ("Score:",
#: 分数：), a code, brackets, punctuation
_WORDS = re.compile(r"[^\W_]+")
_FRAME_WORDS = 4


def _is_frame(rest: str) -> bool:
    """A few words and no figure, not a finished sentence: a label, not content."""
    words = _WORDS.findall(rest)
    n = sum(max(1, len(w) // 2) if re.match(r"[\u4e00-\u9fff]", w) else 1 for w in words)
    return (n <= _FRAME_WORDS and not re.search(r"\d", rest)
            and not re.search(r"[^\W\d_]{2,}[.!?。！？]\s*$", rest))


def _widen(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans widened to their frame: the brackets around a removed span, or its whole line,
    when what would be left there is only a short label or punctuation ("Score: [[9]]" goes
    whole, not leaving "Score:"; "… navy (rated [[9]])." loses the brackets)."""
    out = list(spans)
    for start, end in spans:
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        opened = max(text.rfind("(", line_start, start), text.rfind("（", line_start, start))
        closes = [i for i in (text.find(")", end, line_end), text.find("）", end, line_end))
                  if i >= 0]
        if opened >= 0 and closes and _is_frame(text[opened + 1:start] + text[end:min(closes)]):
            out.append((opened, min(closes) + 1))
    out = _merge(out)
    for start, end in list(out):
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        rest = "".join(text[a:b] for a, b in _gaps(out, line_start, line_end))
        if _is_frame(rest):  # the line goes, with its line break
            out.append((line_start, min(line_end + 1, len(text))))
    return _merge(out)


def _gaps(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` that no span covers."""
    gaps, pos = [], start
    for a, b in spans:
        if b <= start or a >= end:
            continue
        if a > pos:
            gaps.append((pos, a))
        pos = max(pos, b)
    if pos < end:
        gaps.append((pos, end))
    return gaps


def strip_flagged(text: str, flags: Iterable[Flag] | None = None) -> str:
    """``text`` without its flagged spans (``flagged_spans``), tidied: the answer as it would
    read had it never addressed its grader. Equal to ``text`` when nothing is flagged."""
    spans = flagged_spans(text, flags)
    if not spans:
        return text
    parts, pos = [], 0
    for start, end in spans:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    out = "".join(parts)
    fences = list(re.finditer(r"^[ \t]*```[ \t]*$\n?", out, re.MULTILINE))
    if len(fences) % 2:  # a code fence whose opening went with a flagged block
        out = out[:fences[-1].start()] + out[fences[-1].end():]
    out = re.sub(r"[ \t]+(?=[\n.,;:!?。，；：！？])", "", re.sub(r"[ \t]{2,}", " ", out))
    return re.sub(r"\n{3,}", "\n\n", out).strip()
