"""The scorer end to end against the judge double: score math, shared per-document work,
faults, the text fallback, Chinese prompts."""

from __future__ import annotations

import asyncio
import re

import pytest

from longreward import LongReward, ScoreOptions
from longreward.io.records import Candidate, PromptRecord
from longreward.judge import ModelClient, create_apis
from longreward.retrieval import BM25Retriever

from scripted_judge import Script, language_of, step_of, user_text

WORDS = ["harbour", "dredging", "tonnage", "ferry", "cranes", "budget", "surplus", "berth", "pilots", "storm", "tariff", "warehouse", "customs", "container", "fishing", "lighthouse", "channel", "quay", "tug", "cargo"]


def make_document(n_paragraphs: int = 120) -> str:
    paras = []
    for i in range(n_paragraphs):
        w = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6)]
        paras.append(f"Section {i}. In year {1900 + i} the {w[0]} of district {i} handled "
                     f"{i * 37 + 11} units of {w[1]} while the {w[2]} and {w[3]} reported "
                     f"{w[4]} figures near {i * 13 + 5} for the {w[5]} office.")
    return "\n\n".join(paras)


def make_scorer(double, **opts) -> LongReward:
    options = ScoreOptions.model_validate({
        "judge": {"provider": "openai_compatible", "model": "judge-double",
                  "base_urls": [double.base_url], "max_retries": 6, "timeout": 1.0,
                  **opts.pop("judge", {})},
        **opts})
    apis = create_apis("openai_compatible", "judge-double", base_urls=[double.base_url],
                       api_key="test-key")
    client = ModelClient(apis, max_retries=options.judge.max_retries, timeout=options.judge.timeout,
                         backoff_base=0.01, backoff_max=0.05,
                         structured_output=options.judge.structured_output)
    retriever = BM25Retriever()
    return LongReward(client, options=options, retriever=retriever)


def run(coro):
    return asyncio.run(coro)


GRADES = {"A": "fully", "B": "partially", "C": "not"}


def hand_script(statements=("A fact", "B fact", "C fact")) -> Script:
    def grade(body):
        stmt = user_text(body).split("<statement_to_check>")[-1]
        letter = next(k for k in GRADES if f"{k} fact" in stmt)
        return {"analysis": "compared", "support": GRADES[letter]}

    return Script(
        helpfulness=lambda b: {"analysis": "good", "score": 7},
        logicality=lambda b: {"errors": ["x contradicts y"], "analysis": "one slip", "score": 4},
        faithfulness_statements=lambda b: {"statements": list(statements)},
        faithfulness_grading=grade,
        completeness_extraction=lambda b: {"relevant": True, "points": ["point"]},
        completeness_coverage=lambda b: {"analysis": "covers most", "score": 9},
    )


@pytest.mark.parametrize("mode", ["json", "text"])
def test_score_math_of_every_dimension(judge_double, mode):
    judge_double.responder = hand_script()
    if mode == "text":
        judge_double.reject_schema = True
    scorer = make_scorer(judge_double)
    ans = run(scorer.score(make_document(30), "What happened?", "Some answer."))
    assert ans.results["helpfulness"].score == 7
    assert ans.results["logicality"].score == 4
    assert ans.results["logicality"].details["errors"] == ["x contradicts y"]
    # 10 · (1 + 0.5 + 0) / 3
    assert ans.results["faithfulness"].score == pytest.approx(5.0)
    assert ans.results["faithfulness"].details["counts"] == {"fully": 1, "partially": 1, "not": 1}
    assert ans.results["completeness"].score == 9
    assert ans.reward == pytest.approx((7 + 4 + 5 + 9) / 4)
    assert ans.dimensions == ["helpfulness", "logicality", "faithfulness", "completeness"]
    if mode == "text":
        assert scorer.client.reply_mode == "text"
        assert not any(r["body"].get("response_format") for r in judge_double.requests[-5:])


def test_faithfulness_with_no_statements_is_zero_and_flagged(judge_double):
    # saying nothing factual earns no faithfulness (until 0.2 it earned a free 10)
    judge_double.responder = hand_script(statements=())
    ans = run(make_scorer(judge_double).score(make_document(10), "Q?", "I cannot tell."))
    f = ans.results["faithfulness"]
    assert f.score == 0.0 and f.cause is None
    assert f.details["n_statements"] == 0 and f.details["no_statements"] is True
    assert not any(step_of(r["body"])[0] == "faithfulness_grading" for r in judge_double.requests)


def test_weights_and_dimension_subset(judge_double):
    judge_double.responder = hand_script()
    scorer = make_scorer(judge_double, dimensions=["helpfulness", "logicality"],
                         weights={"helpfulness": 3, "logicality": 1})
    ans = run(scorer.score(make_document(10), "Q?", "A."))
    assert set(ans.results) == {"helpfulness", "logicality"}
    assert ans.reward == pytest.approx((3 * 7 + 1 * 4) / 4)
    steps = {step_of(r["body"])[0] for r in judge_double.requests}
    assert steps == {"helpfulness", "logicality"}


def test_per_document_work_is_shared_across_ten_candidates(judge_double):
    doc = make_document(400)  # several 4096-token extraction chunks
    shared = ["Section 3 handled 122 units.", "The harbour grew."]
    n_cands = 10

    def statements(body):
        answer = user_text(body)
        k = int(re.search(r"candidate (\d+)", answer).group(1))
        # every answer repeats the shared statements (twice in one answer) plus its own
        return {"statements": [*shared, shared[0], f"Unique claim {k}."]}

    judge_double.responder = Script(faithfulness_statements=statements)
    scorer = make_scorer(judge_double)
    record = PromptRecord("p1", doc, "What happened in the districts?",
                          [Candidate(f"c{k}", f"This is candidate {k}.") for k in range(n_cands)])
    answers = run(scorer.score_prompt(record))
    assert len(answers) == n_cands
    steps = [step_of(r["body"])[0] for r in judge_double.requests]
    work = scorer._prompt_work(record)
    n_chunks = len(work.doc.extraction_chunks)
    assert n_chunks >= 3
    # extraction: once per (document, chunk), not once per answer
    assert steps.count("completeness_extraction") == n_chunks
    extracted = [user_text(r["body"]) for r in judge_double.requests
                 if step_of(r["body"])[0] == "completeness_extraction"]
    assert len(set(extracted)) == n_chunks
    # the document is chunked and indexed once
    assert scorer.retriever.index_builds == 1
    # identical statements judged once: 2 shared + 10 unique
    assert steps.count("faithfulness_grading") == len(shared) + n_cands
    assert steps.count("completeness_coverage") == n_cands
    for a in answers:
        assert a.results["faithfulness"].details["n_statements"] == 4


def test_faults_at_20_percent_end_scored_or_unscored_with_reason(judge_double):
    from judge_double import Faults

    judge_double.faults = Faults(rate=0.2, kinds=("429", "500", "timeout", "invalid_json",
                                                  "empty"), seed=3, retry_after=0.01)
    scorer = make_scorer(judge_double, judge={"max_retries": 2, "attempts": 2})
    records = [PromptRecord(f"p{i}", make_document(20 + i), f"Question {i}?",
                            [Candidate(f"p{i}-{k}", f"Answer {k} about section {k}.")
                             for k in range(3)]) for i in range(4)]
    answers = run(scorer.score_many(records))
    assert len(answers) == 12
    faults_seen = 0
    for a in answers:
        for name, r in a.results.items():
            assert (r.score is None) != (r.unscored_reason is None), (a.id, name)
            if r.score is None:
                faults_seen += 1
                assert r.unscored_reason
    stats = scorer.client.snapshot()
    assert stats["retries"] > 0
    # some of the injected faults must have surfaced (retries or unscored), none crashed
    assert stats["retries"] + faults_seen > 0


def test_unparsable_replies_leave_dimension_unscored_with_raw_kept(judge_double):
    judge_double.reject_schema = True
    judge_double.responder = Script(helpfulness=lambda b: "I think it is fine, maybe seven.")
    scorer = make_scorer(judge_double, dimensions=["helpfulness"])
    ans = run(scorer.score("doc text here.", "Q?", "A."))
    h = ans.results["helpfulness"]
    assert h.score is None and "score" in h.unscored_reason.lower()
    assert h.details["raw"] and all("maybe seven" in r for r in h.details["raw"])
    # the first request asked for a schema and was rejected; then 5 text-mode attempts
    temps = [r["body"].get("temperature") for r in judge_double.requests
             if step_of(r["body"])[0] == "helpfulness" and not r["body"].get("response_format")]
    assert len(temps) == 5 and temps[0] == 0 and temps[-1] == pytest.approx(0.95)
    assert ans.reward is None and ans.all_unscored


def test_echoed_template_is_not_read_as_a_score(judge_double):
    from longreward.reward.dimensions import load_prompt

    echo = load_prompt("helpfulness", "en").reply["text"]
    judge_double.reject_schema = True
    judge_double.responder = Script(helpfulness=lambda b: echo + "\nScore: 7 out of [[N]]")
    scorer = make_scorer(judge_double, dimensions=["helpfulness"], judge={"attempts": 2})
    ans = run(scorer.score("doc.", "Q?", "A."))
    assert ans.results["helpfulness"].score is None


def test_chinese_input_uses_chinese_prompts(judge_double):
    langs = []

    def spy(body):
        langs.append(language_of(body))
        return None

    judge_double.responder = spy
    doc = "\n\n".join(f"第{i}节。合作社在{2000 + i}年生产了{i * 12}吨茶叶，价格上涨。" for i in range(60))
    ans = run(make_scorer(judge_double).score(doc, "合作社的产量如何变化？", "产量逐年增加。"))
    assert ans.language == "zh"
    assert langs and set(langs) == {"zh"}


def test_explicit_language_overrides_detection(judge_double):
    langs = []
    judge_double.responder = lambda body: langs.append(language_of(body))
    scorer = make_scorer(judge_double, language="en", dimensions=["helpfulness"])
    run(scorer.score("文档。", "问题？", "回答。"))
    assert set(langs) == {"en"}


def test_judge_window_too_small_leaves_completeness_unscored_with_reason(judge_double):
    # tokens: the helpfulness prompt (~1,550) fits; a 4096-token extraction chunk does not
    judge_double.context_limit = 2000
    scorer = make_scorer(judge_double, dimensions=["helpfulness", "completeness"])
    ans = run(scorer.score(make_document(300), "What happened?", "A short answer."))
    assert ans.results["helpfulness"].score is not None
    c = ans.results["completeness"]
    assert c.score is None and "context" in c.unscored_reason.lower()
    assert "--completeness-chunk-tokens" in c.unscored_reason
    # permanent errors are not retried: one request per extraction chunk
    n_chunks = len(scorer._prompt_work(
        PromptRecord("p0", make_document(300), "What happened?", [])).doc.extraction_chunks)
    assert judge_double.count() == 1 + n_chunks


def test_scoring_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, asyncio\n"
        "from longreward import LongReward, ModelClient, create_apis\n"
        "s = LongReward(ModelClient(create_apis('dry_run', 'dry-run')))\n"
        "a = s.score_sync('A document. It has facts.', 'What?', 'An answer. With facts.')\n"
        "assert a.reward is not None\n"
        "import longreward.cli\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_score_sync_twice_and_inside_a_running_event_loop(judge_double):
    # asyncio.run per call left the SDK's connections on a closed loop ("Event loop is
    # closed" on the second call) and refused to run at all inside a loop (Jupyter).
    scorer = make_scorer(judge_double)
    doc = make_document(20)
    try:
        first = scorer.score_sync(doc, "What happened?", "An answer.")
        second = scorer.score_sync(doc, "What happened?", "Another answer.", answer_id="a1")

        async def in_a_notebook_cell():
            return scorer.score_sync(doc, "What happened?", "A third answer.", answer_id="a2")

        third = asyncio.run(in_a_notebook_cell())
    finally:
        scorer.close()
    for ans in (first, second, third):
        assert not ans.all_unscored, {k: r.unscored_reason for k, r in ans.results.items()}


def test_a_cancelled_answer_does_not_poison_the_shared_document_work(judge_double):
    judge_double.responder = hand_script()
    scorer = make_scorer(judge_double, judge={"timeout": 5.0})
    doc = make_document(30)

    async def main():
        judge_double.delay = 0.5
        with pytest.raises(asyncio.TimeoutError):
            # the caller gives up while the shared extraction and grades are in flight
            await asyncio.wait_for(scorer.score(doc, "What happened?", "First."), 0.2)
        judge_double.delay = 0.0
        return await scorer.score(doc, "What happened?", "Second.", answer_id="a1")

    ans = run(main())
    assert ans.results["completeness"].score == 9
    assert ans.results["faithfulness"].score == pytest.approx(5.0)


class FlakyRetriever(BM25Retriever):
    """Fails its first index build, as an embeddings endpoint that is briefly down would."""

    failures = 1

    async def _build(self, chunks):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("embeddings endpoint unreachable")
        return await super()._build(chunks)


def test_a_failed_shared_task_is_retried_by_later_answers(judge_double):
    judge_double.responder = hand_script()
    scorer = make_scorer(judge_double)
    scorer.retriever = FlakyRetriever()
    doc = make_document(30)

    async def main():
        first = await scorer.score(doc, "What happened?", "First.")
        second = await scorer.score(doc, "What happened?", "Second.", answer_id="a1")
        return first, second

    first, second = run(main())
    assert first.results["faithfulness"].score is None
    assert "retrieval failed" in first.results["faithfulness"].unscored_reason
    # before: the failed index task stayed memoised and every later answer failed too
    assert second.results["faithfulness"].score == pytest.approx(5.0)


def test_an_unexpected_exception_leaves_the_dimension_unscored_not_the_run_crashed(
        judge_double, tmp_path):
    import json

    from longreward import score_file
    from longreward.judge.providers.dry_run import DryRunAPI

    class Exploding(DryRunAPI):
        async def generate(self, messages, config, json_schema=None):
            if "logical" in messages[0].content.lower():
                raise RuntimeError("boom")
            return await super().generate(messages, config, json_schema)

    rows = [{"id": f"a{i}", "prompt_id": f"p{i}", "context": make_document(10),
             "query": "What happened?", "response": "An answer."} for i in range(3)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = ScoreOptions()
    scorer = LongReward(ModelClient(Exploding()), options=options, retriever=BM25Retriever())
    summary = run(score_file(src, tmp_path / "out.jsonl", options, scorer=scorer))
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 3 and summary.answers_scored == 3
    for row in out:
        assert row["scores"]["logicality"] is None
        assert "RuntimeError: boom" in row["unscored"]["logicality"]
        assert row["scores"]["helpfulness"] is not None


def test_one_scorer_serves_two_files_without_a_closed_store(judge_double, tmp_path):
    import json

    from longreward import score_file

    rows = [{"id": "a0", "context": make_document(10), "query": "What happened?",
             "response": "An answer."}]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(rows[0]) + "\n")
    scorer = make_scorer(judge_double)

    async def main():
        # before: the first call left its (closed) run store as the client's cache, and
        # every call of the second failed with "the run store ... is closed"
        await score_file(src, tmp_path / "one.jsonl", scorer.options, scorer=scorer)
        await score_file(src, tmp_path / "two.jsonl", scorer.options, scorer=scorer)
        return await scorer.score(make_document(10), "What happened?", "Later answer.")

    later = run(main())
    for name in ("one.jsonl", "two.jsonl"):
        row = json.loads((tmp_path / name).read_text())
        assert row["dimensions"] and not row["unscored"], row["unscored"]
    assert not later.all_unscored


def test_a_fatal_error_in_one_dimension_cancels_the_others():
    """Once the run is stopping, no sibling dimension keeps sending requests to the judge."""
    from longreward.judge import JudgeFatalError
    from longreward.judge.providers.dry_run import DryRunAPI

    cancelled: list[str] = []

    class StopsTheRun(DryRunAPI):
        async def generate(self, messages, config, json_schema=None):
            if "logical" in messages[0].content.lower():
                await asyncio.sleep(0.05)  # the siblings are waiting on the judge by now
                raise JudgeFatalError("the judge refuses every request")
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(messages[0].content[:40])
                raise
            raise AssertionError("not reached")

    scorer = LongReward(ModelClient(StopsTheRun()),
                        options=ScoreOptions(dimensions=["helpfulness", "logicality"]),
                        retriever=BM25Retriever())
    record = PromptRecord("p", make_document(10), "What happened?",
                          [Candidate("a", "An answer."), Candidate("b", "Another answer.")])

    async def main():
        with pytest.raises(JudgeFatalError, match="refuses every request"):
            await asyncio.wait_for(scorer.score_prompt(record), timeout=60)
        # both answers' helpfulness calls were waiting on the judge, and were stopped before
        # the error reached the caller (not later, when the event loop shuts down)
        assert len(cancelled) == 2
        await scorer.aclose()

    run(main())
