"""``gather`` that stops the siblings when one awaitable fails.

``asyncio.gather`` leaves the other awaitables running when one raises: a fatal judge error
in one dimension would leave the other three sending requests to a judge the run has
already given up on, and their results would be thrown away. ``asyncio.TaskGroup`` does
what we want but needs Python 3.11; we support 3.10.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_or_cancel(*aws: Awaitable[T]) -> list[T]:
    """The results of ``aws`` in order. When one raises, the others are cancelled and
    awaited (so nothing is left running) and the first exception is raised."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
