"""The OpenAI Batch API as an executor of rounds, through the ``openai`` SDK: upload a part
(Files API), create its batch, poll it, download its output and error files. Any provider that
copies the API (and ``tests/judge_double.py``) works by its base URL.

Control-plane calls are retried by the SDK itself; one that still fails stops the run with a
message (a rerun resumes the same batches). A refused key or an unknown URL stops it at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..._util.redact import redact
from ...errors import LongRewardError
from .._types import JudgeFatalError

logger = logging.getLogger("longreward.judge")

TERMINAL = ("completed", "failed", "expired", "cancelled")
#: a batch created this long before its part was recorded is not the part's (clock skew)
SKEW_S = 300.0


class BatchServiceError(LongRewardError):
    """The batch service failed a control-plane call (upload, create, poll, download) after
    the SDK's retries. Nothing is lost: rerun the same command to resume the same batches."""


@dataclass
class BatchInfo:
    """What the driver needs of a batch object."""

    id: str
    status: str
    input_file_id: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    created_at: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def counts(self) -> dict[str, Any]:
        return {"batch_status": self.status, "total": self.total, "completed": self.completed,
                "failed": self.failed, "errors": self.errors[:5]}


def _info(batch: Any) -> BatchInfo:
    counts = getattr(batch, "request_counts", None)
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    return BatchInfo(
        id=batch.id, status=batch.status, input_file_id=batch.input_file_id or "",
        output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
        total=getattr(counts, "total", 0) or 0, completed=getattr(counts, "completed", 0) or 0,
        failed=getattr(counts, "failed", 0) or 0,
        errors=[f"{e.code or 'error'}: {e.message or ''}"
                + (f" (line {e.line})" if getattr(e, "line", None) else "") for e in errors],
        created_at=float(batch.created_at or 0))


class OpenAIBatches:
    """One Batch API endpoint. ``base_url`` as for the online client (ending in ``/v1``)."""

    def __init__(self, *, base_url: str, api_key: str, headers: dict[str, str] | None = None,
                 timeout: float = 600.0, max_retries: int = 5) -> None:
        import openai

        self._openai = openai
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key,
                                          default_headers=headers or None, timeout=timeout,
                                          max_retries=max_retries)
        self.label = redact(base_url)

    async def _call(self, what: str, coro: Any) -> Any:
        openai = self._openai
        try:
            return await coro
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise JudgeFatalError(
                f"{self.label} refused the batch request ({what}: {redact(str(exc))}). Fix: "
                "check the API key (--api-key-env NAME, or LONGREWARD_API_KEY / "
                "OPENAI_API_KEY) and any --header the service needs.") from None
        except openai.NotFoundError as exc:
            if what.startswith(("upload", "create")):
                raise JudgeFatalError(
                    f"{self.label} has no batch API ({what}: {redact(str(exc))}). Fix: use a "
                    "provider that offers /v1/files and /v1/batches, or --batch files with an "
                    "executor of your own (docs/batch.md).") from None
            raise BatchServiceError(f"{what}: {redact(str(exc))}") from None
        except openai.APIError as exc:
            raise BatchServiceError(
                f"the batch service at {self.label} failed ({what}): {redact(str(exc))}. "
                "Rerun the same command to resume the same batches.") from None

    async def upload(self, name: str, data: bytes) -> str:
        f = await self._call(f"upload {name}", self._client.files.create(
            file=(name, data, "application/jsonl"), purpose="batch"))
        return str(f.id)

    async def find_upload(self, name: str, since: float) -> str | None:
        """The id of a file uploaded under ``name`` since ``since`` (a run killed during its
        upload), or None."""
        async def scan() -> str | None:
            async for f in self._client.files.list(purpose="batch"):
                if f.filename == name and f.created_at >= since - SKEW_S:
                    return str(f.id)
            return None

        return await self._call(f"list files for {name}", scan())

    async def create(self, file_id: str, url: str, window: str,
                     metadata: dict[str, str]) -> BatchInfo:
        batch = await self._call(f"create batch of {file_id}", self._client.batches.create(
            input_file_id=file_id, endpoint=url, completion_window=window,  # type: ignore[arg-type]
            metadata=metadata))
        return _info(batch)

    async def find_batch(self, file_id: str, since: float) -> BatchInfo | None:
        """A batch already made from ``file_id`` (a run killed while creating it), or None.
        The list is newest first: stop at batches older than the part."""
        async def scan() -> BatchInfo | None:
            async for b in self._client.batches.list(limit=100):
                if b.input_file_id == file_id:
                    return _info(b)
                if b.created_at < since - SKEW_S:
                    return None
            return None

        return await self._call(f"list batches for {file_id}", scan())

    async def retrieve(self, batch_id: str) -> BatchInfo:
        return _info(await self._call(f"poll {batch_id}",
                                      self._client.batches.retrieve(batch_id)))

    async def cancel(self, batch_id: str) -> BatchInfo:
        return _info(await self._call(f"cancel {batch_id}",
                                      self._client.batches.cancel(batch_id)))

    async def download(self, file_id: str) -> str:
        content = await self._call(f"download {file_id}", self._client.files.content(file_id))
        return str(content.text)

    async def aclose(self) -> None:
        await self._client.close()
