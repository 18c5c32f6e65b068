"""The round driver: a stage runs its normal code; the calls that miss the cache park
(``_transport``); when every piece of work in flight waits on a parked call (quiescence), the
parked calls are one round. The round goes out (Batch API, or shard files for any executor),
its result lines are kept in the run store (``_book``), and the parked calls wake up and read
them as if the server had answered. Then the next round builds up, and so on until the stage
is done. Rounds therefore follow the reward's own dependencies (round 1: helpfulness,
logicality, statements, extraction; round 2: grading, coverage; then re-asks) without a line
of dimension code knowing about batches, and the rows equal an online run's.

Quiescence is seen without guessing at time: everything that can move while nothing is parked
is counted (``Activity``: a park, a reply handed out, retrieval in a thread or over HTTP);
between two counted events the rest is bounded chaining of tasks and futures, a few loop
iterations deep. So ``IDLE_ITERATIONS`` turns of the event loop with no event, none of that
outside work running, and parked calls waiting, is quiescence.

A call whose line failed raises the error an online reply would have (``_lines``); the client's
one retry path then asks again, which parks the call for the next round (``reissues`` times at
most). Replies are handed out in the order their rounds went out, so a rerun (file mode runs
once per round; a killed run resumes) replays every call the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from .._client import ModelClient
from .._provider import ModelAPI
from .._registry import canonical_provider
from .._types import StructuredOutput
from ._book import BatchBook, Issue, Part
from ._lines import ResultLine, custom_id, read_result_text, request_line, split
from ._openai import BatchInfo, OpenAIBatches
from ._options import BatchOptions
from ._transport import UNBOUNDED, Activity, BatchAPI, BatchCache, tracked

if TYPE_CHECKING:
    from ...config import EndpointOptions

logger = logging.getLogger("longreward.judge")

#: event-loop turns with nothing counted happening before the parked calls form a round
IDLE_ITERATIONS = 200
#: ... and at least this long (seconds): cheap insurance against a wait nothing counts
IDLE_SECONDS = 0.02
#: nothing parked, nothing running and the stage not done for this long is a bug
STALL_SECONDS = 300.0
#: a parked call waits for its round, however long the batch takes
FOREVER = 10 * 365 * 86400.0


class BatchPending(Exception):  # noqa: N818 - a state, not a failure
    """File mode: a round is written (or earlier shards still lack results) and the stage
    stops until an executor has run them. ``message`` says what to run next."""

    def __init__(self, message: str, *, round_no: int | None, shards: list[str],
                 waiting: int) -> None:
        super().__init__(message)
        self.round_no = round_no
        self.shards = shards
        self.waiting = waiting


@dataclass
class Parked:
    key: str
    url: str
    body: dict[str, Any]
    structured: bool
    future: asyncio.Future[None]


class BatchRun:
    """One stage's batch mode: the parked calls, the run's batch book and the round driver.

    Use: ``client = run.make_client(endpoint_options)``; when the stage opens its run store,
    ``run.attach(store)``; the stage runs its units through ``run.supervise(...)``.
    """

    def __init__(self, options: BatchOptions, stage: str, *,
                 invocation: dict[str, Any] | None = None) -> None:
        self.options = options
        self.stage = stage
        #: how to run this stage again (file mode: ``longreward batch ingest`` reruns it)
        self.invocation = invocation
        self.activity = Activity()
        self.book: BatchBook | None = None
        self.client: ModelClient | None = None
        self.run_dir: Path | None = None
        self._executor: OpenAIBatches | None = None
        self._executor_args: dict[str, Any] | None = None
        self._parked: dict[str, Parked] = {}
        self._consumed: Counter[str] = Counter()
        self._handed: set[str] = set()
        self._round_parts: list[Part] = []
        #: rounds this process sent or waited for, and what came back
        self.rounds: list[dict[str, Any]] = []
        self.discounted = False
        #: seconds of local work before each round and after the last one (wall time from
        #: the start, or a round's return, to the next quiescence or the end)
        self.local_seconds: list[float] = []
        #: of which, per round, the quiet time taken to be sure the stage waits (quiescence)
        self.idle_seconds: list[float] = []

    # ------------------------------------------------------------------ set-up

    def make_client(self, endpoint: EndpointOptions, *, structured_output: StructuredOutput =
                    "auto", wrap: Callable[[ModelAPI], ModelAPI] | None = None) -> ModelClient:
        """The client a stage uses in batch mode: ``endpoint``'s model, prices at the batch
        discount, and requests that become batch lines. ``wrap`` adapts the provider (the
        sampler's completion style)."""
        if canonical_provider(endpoint.provider) != "openai_compatible":
            raise UsageError(
                f"batch mode sends OpenAI-format requests, so it needs the openai_compatible "
                f"provider, not {endpoint.provider!r}: pass --model NAME (and --base-url URL "
                "for the Batch API of another service)")
        if not endpoint.model:
            raise UsageError("batch mode needs the model's name: pass --model NAME")
        if len(endpoint.base_urls) > 1:
            raise UsageError("batch mode sends each round to one service: pass one --base-url")
        base_url = endpoint.base_urls[0] if endpoint.base_urls else None
        # file mode sends nothing itself (an ingest may run where the key is not set)
        api_key = endpoint.api_key() if self.options.mode == "openai" else None
        api: ModelAPI = BatchAPI(self._park, endpoint.model, base_url=base_url, api_key=api_key,
                                 extra_body=endpoint.extra_body or None)
        if self.options.mode == "openai":
            from ..providers.openai_compatible import resolve_api_key

            self._executor_args = {"base_url": str(api.base_url),
                                   "api_key": resolve_api_key(api_key),
                                   "headers": dict(endpoint.extra_headers)}
        if wrap is not None:
            api = wrap(api)
        # No probe (it would cost a round): batch executors take json_schema replies.
        mode = "json_schema" if structured_output == "auto" else structured_output
        prices = endpoint.prices.for_batch() if endpoint.prices is not None else None
        #: the cost estimate is at batch prices (a ``batch_discount`` is configured)
        self.discounted = prices is not None and endpoint.prices.batch_discount is not None
        self.client = ModelClient(
            api, max_concurrency=UNBOUNDED, timeout=FOREVER, max_retries=self.options.reissues,
            # a failed line waits for the next round, not for a backoff timer
            backoff_base=0.0, backoff_max=0.0, prices=prices, structured_output=mode)
        return self.client

    def attach(self, store: Any, *, retry_failed: bool = False) -> None:
        """The stage's run store is open: keep the batch book beside it and make the store,
        seen through the batch cache, the client's call cache. ``retry_failed`` (the stage
        redoes unscored rows): failed lines of earlier runs no longer count, so those calls
        go out again, as an online rerun would send them."""
        self.run_dir = Path(store.path).parent
        self.book = BatchBook(store.path, self.stage)
        if retry_failed:
            self.book.supersede_failures()
        if self.client is not None:
            self.client.cache = BatchCache(store, self.book.has_results, self._handed)
        if self.invocation is not None:
            self.book.set_meta(f"batch:invocation:{self.stage}", self.invocation)

    def close(self) -> None:
        """Close the batch book (the stage's store is closed too: detach the cache)."""
        if self.book is not None:
            self.book.close()
            self.book = None
        if self.client is not None:
            self.client.cache = None

    def track(self, target: Any) -> Any:
        """``target`` (a retriever) with its waits counted as work in progress."""
        return tracked(target, self.activity)

    def snapshot(self) -> dict[str, Any]:
        """The client's counters for a progress display (a parked call is not a stalled
        endpoint, so the online stall check is left out)."""
        assert self.client is not None
        return self.client.stats.snapshot(self.client.prices)

    def _notice(self, text: str | None) -> None:
        if self.client is not None:
            self.client.stats.notice("batch", text)

    # ------------------------------------------------------------------ parking

    async def _park(self, key: str, url: str, body: dict[str, Any], structured: bool
                    ) -> dict[str, Any]:
        """What ``BatchAPI`` sends: the next reply read back for ``key``, or a park until
        its round has come back."""
        while True:
            got = self._next_result(key)
            if got is not None:
                self.activity.bump()
                if got.ok:
                    return got.reply()
                raise got.error(structured=structured)
            parked = self._parked.get(key)
            if parked is None or parked.future.done():
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                parked = self._parked[key] = Parked(key, url, body, structured, future)
                self.activity.bump()
            await asyncio.shield(parked.future)

    def _next_result(self, key: str) -> ResultLine | None:
        assert self.book is not None, "BatchRun.attach(store) was not called"
        results = self.book.results(key)
        i = self._consumed[key]
        if i >= len(results):
            return None
        self._consumed[key] = i + 1
        self._handed.add(key)
        return results[i]

    def _waiting(self) -> list[Parked]:
        return [p for p in self._parked.values() if not p.future.done()]

    def _wake(self) -> None:
        for p in self._waiting():
            p.future.set_result(None)
        self._parked.clear()
        self.activity.bump()

    # ------------------------------------------------------------------ the driver

    async def supervise(self, units: Awaitable[Any]) -> Any:
        """Run ``units`` (the stage's work) to the end, sending a round each time it is
        quiescent. File mode raises ``BatchPending`` after writing a round."""
        task = asyncio.ensure_future(units)
        try:
            while True:
                started = time.monotonic()
                await self._settle(task)
                #: the stage's own work since the last round came back (or since the start)
                self.local_seconds.append(round(time.monotonic() - started, 4))
                if task.done():
                    return task.result()
                await self._round()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._notice(None)
            if self._executor is not None:
                await self._executor.aclose()
                self._executor = None

    async def _settle(self, task: asyncio.Future[Any]) -> None:
        """Return when ``task`` is done, or when every piece of work in flight waits on a
        parked call (see the module docstring)."""
        loop = asyncio.get_running_loop()
        seen, idle, since = self.activity.events, 0, loop.time()
        while not task.done():
            if self.activity.external:
                await asyncio.sleep(0.01)  # a thread or a socket: no need to spin
                seen, idle, since = self.activity.events, 0, loop.time()
                continue
            await asyncio.sleep(0)
            if self.activity.events != seen:
                seen, idle, since = self.activity.events, 0, loop.time()
                continue
            idle += 1
            if idle < IDLE_ITERATIONS or loop.time() - since < IDLE_SECONDS:
                continue
            if self._waiting():
                self.idle_seconds.append(round(loop.time() - since, 4))
                return
            if loop.time() - since > STALL_SECONDS:
                raise RuntimeError(
                    f"batch mode: the {self.stage} stage has waited {STALL_SECONDS:.0f}s with "
                    "no request parked and nothing running (a bug; please report it)")
            await asyncio.sleep(0.05)

    async def _round(self) -> None:
        assert self.book is not None
        waiting = self._waiting()
        new: list[Parked] = []
        open_parts: dict[tuple[int, int], int] = Counter()
        for p in waiting:
            issue = self.book.open_issue(p.key)
            if issue is not None and not (self.options.mode == "files"
                                          and self.options.reissue_missing):
                open_parts[(issue.round, issue.part)] += 1
            else:
                new.append(p)
        planned = self._plan(new) if new else []
        if self.options.mode == "files":
            self._pending(planned, open_parts)
        resumed = [self.book.get_part(r, n) for r, n in open_parts]
        bodies = {p.key: p for p in waiting}
        await self._run_parts(planned, resumed, bodies)
        self._wake()

    def _plan(self, new: list[Parked]) -> list[tuple[Part, bytes]]:
        """Record the new requests as the next round's parts (and, in file mode, write them):
        each part holds one URL's lines, within the request and size limits."""
        assert self.book is not None
        round_no = self.book.next_round()
        by_url: dict[str, list[tuple[str, bytes]]] = {}
        keys: dict[str, str] = {}
        for p in new:
            cid = custom_id(round_no, p.key)
            keys[cid] = p.key
            by_url.setdefault(p.url, []).append((cid, request_line(cid, p.url, p.body)))
        planned: list[tuple[Part, bytes]] = []
        issues: list[list[Issue]] = []
        for url, lines in by_url.items():
            for chunk in split(lines, self.options.max_requests, self.options.max_bytes):
                n = len(planned)
                data = b"".join(line for _, line in chunk)
                part = Part(self.stage, round_no, n, self.options.mode, url, len(chunk),
                            len(data), self._part_name(round_no, n), "planned")
                if self.options.mode == "files":
                    _write_atomic(Path(part.name), data)
                    part.status = "written"
                planned.append((part, data))
                issues.append([Issue(cid, keys[cid], round_no, n) for cid, _ in chunk])
        # Recorded after the shards are written: a kill in between leaves files nobody waits
        # for, never a request awaited from a shard that does not exist.
        self.book.add_parts([(part, i) for (part, _), i in zip(planned, issues, strict=True)])
        logger.info("batch round %d: %d request(s) in %d part(s)", round_no, len(new),
                    len(planned))
        return planned

    def _part_name(self, round_no: int, n: int) -> str:
        if self.options.mode == "files":
            assert self.run_dir is not None
            base = Path(self.options.directory) if self.options.directory else (
                self.run_dir / "rounds")
            return str((base / str(round_no) / f"part-{n:04d}.jsonl").resolve())
        return f"longreward-{self.stage}-round{round_no}-part{n:04d}.jsonl"

    # ------------------------------------------------------------------ file mode

    def _pending(self, planned: list[tuple[Part, bytes]],
                 open_parts: dict[tuple[int, int], int]) -> None:
        assert self.book is not None
        shards = [p.name for p, _ in planned]
        lines = []
        round_no = planned[0][0].round if planned else None
        if planned:
            n = sum(p.n_requests for p, _ in planned)
            where = Path(shards[0]).parent
            lines.append(f"batch round {round_no}: {n:,} request(s) written to {len(shards)} "
                         f"shard(s) in {where}/")
        waiting = sum(open_parts.values())
        if open_parts:
            missing = sorted(open_parts)
            names = [self.book.get_part(r, n).name for r, n in missing[:5]]
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            lines.append(f"{waiting:,} request(s) sent earlier have no result yet, in "
                         f"{', '.join(names)}{more}. Ingest their results when they are "
                         "there, or pass --reissue-missing to `longreward batch ingest` to "
                         "send them again in a new round.")
        run_dir = self.run_dir
        model = self.client.apis[0].model if self.client else "MODEL"
        if shards:
            where = Path(shards[0]).parent
            results = f"results/{round_no}"
            lines += [
                "Run each shard through an executor, e.g. vllm run-batch on a GPU node:",
                f"  mkdir -p {results}",
                f"  for f in {where}/part-*.jsonl; do vllm run-batch -i \"$f\" -o "
                f"{results}/$(basename \"$f\") --model {model}; done",
                "(or a Ray Data pipeline, or a provider's batch console: docs/batch.md), then:",
                f"  longreward batch ingest {run_dir} {results}",
                "which reads the results (any order, any place) and writes the next round or "
                "the final output."]
        self.rounds.append({"round": round_no, "mode": "files", "shards": shards,
                            "waiting": waiting})
        raise BatchPending("\n".join(lines), round_no=round_no, shards=shards, waiting=waiting)

    # ------------------------------------------------------------------ Batch API mode

    async def _run_parts(self, planned: list[tuple[Part, bytes]], resumed: list[Part],
                         bodies: dict[str, Parked]) -> None:
        started = time.monotonic()  # the first round's time includes loading the SDK
        if self._executor is None:
            if self._executor_args is None:
                raise UsageError("batch mode openai needs BatchRun.make_client first")
            self._executor = OpenAIBatches(**self._executor_args)
        jobs = [(part, data, True) for part, data in planned]
        jobs += [(part, self._rebuild(part, bodies), False) for part in resumed]
        self._round_parts = [part for part, _, _ in jobs]
        await asyncio.gather(*(self._drive(part, data, fresh) for part, data, fresh in jobs))
        report = self._round_report()
        report["seconds"] = round(time.monotonic() - started, 3)
        self.rounds.append(report)
        logger.info("batch round %s done: %s", report["round"], report)

    def _rebuild(self, part: Part, bodies: dict[str, Parked]) -> bytes | None:
        """The lines of a part recorded by an earlier process (to upload it if that process
        was killed before its upload), or None when a request is no longer parked."""
        assert self.book is not None
        out = []
        for issue in self.book.issues_of(part):
            p = bodies.get(issue.key)
            if p is None:
                return None
            out.append(request_line(issue.custom_id, p.url, p.body))
        return b"".join(out)

    async def _drive(self, part: Part, data: bytes | None, fresh: bool) -> None:
        """Take one part from wherever it stands to ingested (each step recorded first)."""
        assert self.book is not None and self._executor is not None
        ex = self._executor
        if part.status == "planned":
            file_id = None if fresh else await ex.find_upload(part.name, part.created_at)
            if file_id is None:
                if data is None:
                    # killed before the upload, and its requests are not all asked again:
                    # nothing was sent, so the ones still wanted go into a new round
                    self.book.update_part(part, status="abandoned")
                    return
                file_id = await ex.upload(part.name, data)
            self.book.update_part(part, status="uploaded", file_id=file_id)
        if part.status == "uploaded":
            assert part.file_id is not None
            info = None if fresh else await ex.find_batch(part.file_id, part.created_at)
            if info is None:
                info = await ex.create(part.file_id, part.url, self.options.completion_window,
                                       {"longreward_part": part.name})
                logger.info("batch %s: %s created (%d requests)", part.label, info.id,
                            part.n_requests)
            self._record(part, info)
        while part.status != "ingested":
            assert part.batch_id is not None
            info = await ex.retrieve(part.batch_id)
            self._record(part, info)
            if info.terminal:
                await self._ingest(part, info)
                break
            await asyncio.sleep(self.options.poll_interval)

    def _record(self, part: Part, info: BatchInfo) -> None:
        assert self.book is not None
        before = (part.status, part.info)
        fields = {"status": info.status, "batch_id": info.id, "info": info.counts()}
        if (part.status, part.info) != (info.status, fields["info"]):
            self.book.update_part(part, **fields)
        if before[0] != part.status:
            logger.info("batch %s (%s): %s", part.label, info.id, info.status)
        self._show()

    async def _ingest(self, part: Part, info: BatchInfo) -> None:
        """Read a finished batch's output and error files; a request in neither gets a
        failed line saying why (expired, cancelled, failed, missing)."""
        assert self.book is not None and self._executor is not None
        lines: list[ResultLine] = []
        bad: list[str] = []
        for file_id in (info.output_file_id, info.error_file_id):
            if file_id:
                text = await self._executor.download(file_id)
                for item in read_result_text(text, f"{info.id}:{file_id}"):
                    (bad if isinstance(item, str) else lines).append(item)  # type: ignore[arg-type]
        got = {line.custom_id for line in lines}
        why = {"expired": "batch_expired", "cancelled": "batch_cancelled",
               "failed": "batch_failed"}.get(info.status, "missing_from_batch")
        detail = "; ".join(info.errors[:3]) or f"batch {info.id} ended {info.status}"
        for issue in self.book.issues_of(part):
            if issue.custom_id not in got:
                lines.append(ResultLine(issue.custom_id, 0, _error_body(
                    f"no result line in batch {info.id} ({detail})"), why))
        if bad:
            logger.warning("batch %s: %d unreadable result line(s), e.g. %s", part.label,
                           len(bad), bad[0])
        failed = [line for line in lines if not line.ok]
        if failed:
            codes = Counter(line.code or str(line.status) for line in failed)
            first = failed[0].error(structured=False)
            logger.warning(
                "batch %s (%s, %s): %d of %d lines failed (%s; e.g. %s); those another try can "
                "fix go out again in the next round, the others end unscored with the reason",
                part.label, info.id, info.status, len(failed), part.n_requests,
                ", ".join(f"{c} ×{n}" for c, n in codes.most_common()), first)
        self.book.add_results(lines, info.id, finish=(part, {
            "output_file_id": info.output_file_id, "error_file_id": info.error_file_id}))
        self._show()

    def _round_report(self) -> dict[str, Any]:
        assert self.book is not None
        parts = self._round_parts
        answered = failed = 0
        for part in parts:
            a, f = self.book.answered(part)
            answered += a
            failed += f
        return {"round": max((p.round for p in parts), default=None), "mode": "openai",
                "batches": [p.batch_id for p in parts if p.batch_id],
                "statuses": dict(Counter((p.info or {}).get("batch_status", p.status)
                                         for p in parts)),
                "requests": sum(p.n_requests for p in parts), "answered": answered,
                "bytes": sum(p.n_bytes for p in parts),
                "failed_lines": failed}

    def _show(self) -> None:
        """The progress notice: this round's batches, by status, and their request counts."""
        parts = self._round_parts
        if not parts:
            return
        statuses = Counter((p.info or {}).get("batch_status", p.status) for p in parts)
        done = sum(int((p.info or {}).get("completed", 0)) for p in parts)
        failed = sum(int((p.info or {}).get("failed", 0)) for p in parts)
        total = sum(p.n_requests for p in parts)
        rounds = sorted({p.round for p in parts})
        text = (f"batch round {'/'.join(map(str, rounds))}: "
                + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
                + f" · {done:,}/{total:,} done" + (f" · {failed:,} failed" if failed else ""))
        self._notice(text)


def _error_body(message: str) -> str:
    import json

    return json.dumps({"error": {"message": message}})


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


async def cancel_open_batches(book: BatchBook, executor: OpenAIBatches) -> list[str]:
    """Ask the service to cancel every batch of ``book``'s stage that is still running (their
    finished lines are kept; the rest are sent again by the next run)."""
    cancelled = []
    for part in book.parts():
        if part.batch_id and not part.finished and part.status not in (
                "completed", "failed", "expired", "cancelled"):
            info = await executor.cancel(part.batch_id)
            book.update_part(part, status=info.status, info=info.counts())
            cancelled.append(part.batch_id)
    return cancelled
