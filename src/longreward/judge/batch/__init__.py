"""Batch mode: the reward (or sampling) as rounds of batch requests.

The reward's judge calls form dependent rounds (helpfulness, logicality, statements and
extraction need only the inputs; grading and coverage need their replies; re-asks follow).
Batch mode runs the normal stage with a transport that parks each call missing from the
cache; when all work waits on parked calls, they are one round of OpenAI batch-format
requests, sent by one of two executors:

- ``openai``: the OpenAI Batch API (or any service that copies it), through the ``openai``
  SDK: upload, create, poll, download, all from the one command;
- ``files``: shards ``RUN/rounds/N/part-XXXX.jsonl`` for any executor (``vllm run-batch``,
  Ray Data, a console), read back by ``longreward batch ingest``.

Replies go into the same call cache under the same keys as online replies, so the rows equal
an online run's and a run can switch modes without repeating a call. See docs/batch.md.
"""

from ._book import BatchBook, stages_with_batches
from ._ingest import IngestReport, ShardState, ingest_results, shard_states
from ._lines import ResultLine, parse_result
from ._openai import BatchServiceError, OpenAIBatches
from ._options import MAX_BYTES, MAX_REQUESTS, BatchMode, BatchOptions
from ._rounds import BatchPending, BatchRun, cancel_open_batches

__all__ = [
    "stages_with_batches",
    "MAX_BYTES",
    "MAX_REQUESTS",
    "BatchBook",
    "BatchMode",
    "BatchOptions",
    "BatchPending",
    "BatchRun",
    "BatchServiceError",
    "IngestReport",
    "OpenAIBatches",
    "ResultLine",
    "ShardState",
    "cancel_open_batches",
    "ingest_results",
    "parse_result",
    "shard_states",
]
