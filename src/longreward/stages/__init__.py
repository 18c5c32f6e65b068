"""Resumable file stages — ``sample``, ``score``, ``pairs`` and ``run`` — built on one stage
runner (store, lock, settings check, stale rows, torn-output repair, bounded concurrency)."""
