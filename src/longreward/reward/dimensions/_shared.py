"""Work that depends on the document (or on document + question), not on the answer.

The reference implementation re-chunks, re-embeds and re-extracts for every answer. Here a
``DocumentWork`` is built once per distinct document in a run and a ``PromptWork`` once per
(document, question); every candidate of the prompt reuses them:
- the 128-token chunks and their retrieval index (faithfulness),
- the grade of each distinct statement (its evidence is fixed by the statement, so the
  verdict carries over between answers),
- the per-chunk extraction of query-relevant information (completeness).
Concurrent answers await the same ``asyncio.Task``, so each piece of work runs once. Each
waiter gets a shielded view of it: one answer being cancelled (a caller's timeout, a
cancelled ``score_prompt``) does not cancel the work the other answers wait for. A task that
ended cancelled or with an exception is not memoised: the next request starts it afresh,
so one failure (an embeddings endpoint briefly down) does not poison every later answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...retrieval import RetrievalIndex, Retriever
from ...text import Chunk, Tokenizer, chunk_text

T = TypeVar("T")


def _failed(task: asyncio.Future[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def once(tasks: dict[str, asyncio.Future[Any]], key: str,
         factory: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
    """The result of ``key``'s task, started on first request and shared by later ones (see
    the module docstring for cancellation and failure)."""
    task = tasks.get(key)
    loop = asyncio.get_running_loop()
    if task is not None and task.get_loop() is not loop:
        # Made on another event loop (``score_sync``'s, then ``asyncio.run(...)`` on the same
        # scorer): a finished result carries over; unfinished work is started again here,
        # since a future cannot be awaited across loops (it would end this dimension
        # unscored for no reason of the answer's).
        if task.done() and not _failed(task):
            done: asyncio.Future[Any] = loop.create_future()
            done.set_result(task.result())
            task = tasks[key] = done
        else:
            task = None
    if task is None or _failed(task):
        task = asyncio.ensure_future(factory())
        tasks[key] = task
    return asyncio.shield(task)


@dataclass
class DocumentWork:
    context: str
    tokenizer: Tokenizer
    retriever: Retriever
    retrieval_chunk_tokens: int = 128
    extraction_chunk_tokens: int = 4096
    _tasks: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    _retrieval_chunks: list[Chunk] | None = None
    _extraction_chunks: list[Chunk] | None = None

    @property
    def retrieval_chunks(self) -> list[Chunk]:
        if self._retrieval_chunks is None:
            self._retrieval_chunks = chunk_text(self.context, tokenizer=self.tokenizer,
                                                chunk_tokens=self.retrieval_chunk_tokens)
        return self._retrieval_chunks

    @property
    def extraction_chunks(self) -> list[Chunk]:
        if self._extraction_chunks is None:
            self._extraction_chunks = chunk_text(self.context, tokenizer=self.tokenizer,
                                                 chunk_tokens=self.extraction_chunk_tokens)
        return self._extraction_chunks

    def index(self) -> asyncio.Future[RetrievalIndex]:
        return once(self._tasks, "index",
                    lambda: self.retriever.build([c.text for c in self.retrieval_chunks]))

    def shared(self, key: str, factory: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Per-document memo for dimension work (e.g. a statement's grade)."""
        return once(self._tasks, key, factory)

    def has(self, key: str) -> bool:
        task = self._tasks.get(key)
        return task is not None and not _failed(task)


@dataclass
class PromptWork:
    doc: DocumentWork
    query: str
    language: str
    _tasks: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    def shared(self, key: str, factory: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Per-(document, question) memo, e.g. the completeness extraction."""
        return once(self._tasks, key, factory)
