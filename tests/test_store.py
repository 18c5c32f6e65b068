"""RunStore: migrations, idempotent records, WAL, durability across kill -9."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import longreward.store
from longreward.store import MIGRATIONS, STORE_FILENAME, RunStore, apply_migrations


def test_directory_path_wal_and_migrations_idempotent(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run") as store:
        assert store.path == tmp_path / "run" / STORE_FILENAME
        assert store.journal_mode() == "wal"
        assert apply_migrations(store.db) == []  # already applied on open
    with RunStore(tmp_path / "run") as store:
        names = [r[0] for r in store.db.execute("SELECT name FROM _migrations")]
        assert names == ["m001_initial", "m002_documents", "m003_batches"]


def test_a_new_migration_is_applied_once(tmp_path: Path) -> None:
    RunStore(tmp_path).close()
    calls: list[int] = []

    def m999_test_only(db: sqlite3.Connection) -> None:
        calls.append(1)
        db.execute("CREATE TABLE extra (x INTEGER)")

    MIGRATIONS.append(m999_test_only)
    try:
        RunStore(tmp_path).close()
        RunStore(tmp_path).close()
    finally:
        MIGRATIONS.remove(m999_test_only)
    assert calls == [1]


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    RunStore(tmp_path).close()

    def m998_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    MIGRATIONS.append(m998_broken)
    try:
        with pytest.raises(RuntimeError):
            RunStore(tmp_path)
    finally:
        MIGRATIONS.remove(m998_broken)
    with RunStore(tmp_path) as store:
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables


def test_record_is_idempotent_and_ordered(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        assert store.record("score", "b", {"id": "b", "score": 1})
        assert store.record("score", "a", {"id": "a", "score": 2})
        assert not store.record("score", "b", {"id": "b", "score": 99})  # ignored
        assert store.record("pairs", "b", {"pair": True})  # stages are separate
        store.record("score", "c", {"id": "c", "text": "长上下文"})
        assert store.finished_ids("score") == {"a", "b", "c"}
        assert [r["id"] for r in store.rows("score")] == ["b", "a", "c"]
        assert store.get_row("score", "b") == {"id": "b", "score": 1}
        assert store.get_row("score", "zz") is None
        assert store.count("score") == 3 and store.stages() == ["pairs", "score"]


def test_rows_pages_through_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(longreward.store._store, "_PAGE", 7)
    with RunStore(tmp_path) as store:
        for i in range(30):
            store.record("s", f"{i:03d}", {"i": i})
        assert [r["i"] for r in store.rows("s")] == list(range(30))


def test_call_cache_and_meta(tmp_path: Path) -> None:
    with RunStore(tmp_path / "x.sqlite") as store:
        assert store.get_call("k") is None
        store.put_call("k", {"texts": ["a"]})
        store.put_call("k", {"texts": ["b"]})  # first write wins
        assert store.get_call("k") == {"texts": ["a"]} and store.n_calls() == 1
        assert store.get_meta("config", "none") == "none"
        store.set_meta("config", {"judge": "m"})
        store.set_meta("config", {"judge": "n"})
        assert store.get_meta("config") == {"judge": "n"}
    with pytest.raises(RuntimeError, match="closed"):
        store.get_call("k")


def test_threads_share_one_store(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:

        def work(t: int) -> None:
            for i in range(50):
                store.record("s", f"{t}-{i}", {"t": t})
                store.put_call(f"{t}-{i}", {"x": i})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.count("s") == 200 and store.n_calls() == 200


def test_committed_rows_survive_kill_9(tmp_path: Path) -> None:
    src = Path(longreward.store.__file__).resolve().parents[2]
    code = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(src)!r})\n"
        "from longreward.store import RunStore\n"
        f"store = RunStore({str(tmp_path)!r})\n"
        "for i in range(20):\n"
        "    store.record('score', str(i), {'i': i})\n"
        "store.put_call('key', {'texts': ['kept']})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == -9
    with RunStore(tmp_path) as store:
        assert store.count("score") == 20
        assert store.get_call("key") == {"texts": ["kept"]}


def test_output_locks_live_in_a_private_directory_and_never_follow_a_symlink(
        tmp_path, monkeypatch):
    """Lock files sit outside the user's tree; in a directory others could write, a planted
    symlink could make a run truncate another file. A directory that is not the user's own
    and private is not used (the output goes unlocked); a symlink at the lock's name is
    not followed."""
    import os

    from longreward.store import OutputLock

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    out = tmp_path / "data" / "scored.jsonl"
    with OutputLock(out) as lock:
        directory = lock.path.parent
        assert oct(os.stat(directory).st_mode & 0o777) == "0o700"
        assert "writing" in lock.path.read_text()

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock.path.unlink()
    lock.path.symlink_to(victim)
    with OutputLock(out):  # O_NOFOLLOW: the symlink is refused (so: no lock), not followed
        assert victim.read_text() == "precious" and lock.path.is_symlink()

    lock.path.unlink()
    os.chmod(directory, 0o777)  # not private any more: no lock rather than an unsafe one
    with OutputLock(out) as again:
        assert not again.path.exists()
    assert victim.read_text() == "precious"
