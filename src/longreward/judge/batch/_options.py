"""Batch-mode settings. They say how the rounds travel, never what comes back, so they are
not part of a stage's output settings: a run may switch between online, Batch-API and file
mode and reuse every call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: OpenAI's Batch API takes at most this many requests per batch ...
MAX_REQUESTS = 50_000
#: ... and an input file of at most 200 MB (counted in decimal megabytes, the smaller reading)
MAX_BYTES = 200_000_000

BatchMode = Literal["openai", "files"]


class BatchOptions(BaseModel):
    """How a stage's judge (or policy) calls travel as rounds of batch requests.

    ``openai``: each round is uploaded through the Files API, run as one or more batches
    (``/v1/batches``), polled and read back, all in one command. ``files``: each round is
    written as shards ``RUN/rounds/N/part-XXXX.jsonl`` for any executor (``vllm run-batch``,
    Ray Data, a provider's console), and ``longreward batch ingest`` reads the results back.
    """

    model_config = ConfigDict(extra="forbid")

    mode: BatchMode
    #: requests per batch, or per shard in file mode (the Batch API takes at most 50,000)
    max_requests: int = Field(MAX_REQUESTS, ge=1, le=MAX_REQUESTS)
    #: bytes of request lines per batch or shard (the Batch API takes at most 200 MB)
    max_bytes: int = Field(MAX_BYTES, ge=10_000, le=MAX_BYTES)
    #: seconds between two looks at a running batch
    poll_interval: float = Field(30.0, gt=0)
    #: the Batch API's completion window
    completion_window: str = "24h"
    #: a request whose line failed (an error line, an expired or failed batch) is sent again in
    #: the next round, at most this many times; then its dimension is unscored with the error
    reissues: int = Field(2, ge=0, le=20)
    #: file mode: send again, in a new round, requests whose result lines never came back
    #: (by default they are reported and awaited: their shard may still be running somewhere)
    reissue_missing: bool = False
    #: file mode: where the rounds' shards go (default: the run directory's ``rounds/``)
    directory: str | None = None
