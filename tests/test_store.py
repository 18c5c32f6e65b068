"""RunStore: migrations, idempotent records, WAL, durability across kill -9."""

from __future__ import annotations

import json
import os
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
        assert names == [fn.__name__ for fn in MIGRATIONS]
        assert names[:2] == ["m001_initial", "m002_documents"]
        assert {"m003_batches", "m004_reward_service"} <= set(names)


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


# --------------------------------------------------------------------------- secrets

KEY = "sk-proj-NEVERSTORED0123456789"


def _raw_meta(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return "\n".join(f"{k}={v}" for k, v in db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()


def test_meta_never_holds_a_credential(tmp_path: Path) -> None:
    from longreward.store import check_stage_settings

    settings = {"judge": {"model": "m", "provider_options": {
        "api_key": KEY, "hf_token": "hf_abcdefghijk", "n_ctx": 8192},
        "api_key_env": "JUDGE_KEY", "extra_headers": {"X-Team": "blue-team-secret"},
        "system": f"Authorization: Bearer {KEY}"}}
    with RunStore(tmp_path) as store:
        check_stage_settings(store, "score", settings)
        store.record("score", "a", {"ok": 1})
        # another key is not another setting: the run resumes
        other = json.loads(json.dumps(settings).replace(KEY, "sk-proj-OTHERKEY9876543210"))
        check_stage_settings(store, "score", other)
        # another model is: refused, and the message holds no key either
        with pytest.raises(longreward.store.StaleRunError) as info:
            check_stage_settings(store, "score", {**settings, "judge": {
                **settings["judge"], "model": "m2"}})
        kept = store.get_meta("settings:score")
        # a registered prompt's question is user data, kept exactly
        store.set_meta("serve.prompt.p", {"query": "token: abcd1234?"}, scrub=False)
    raw = _raw_meta(tmp_path / STORE_FILENAME)
    assert KEY not in raw and "hf_abcdefghijk" not in raw and "blue-team-secret" not in raw
    assert KEY not in str(info.value) and "'m' -> 'm2'" in str(info.value)
    assert kept["judge"]["provider_options"] == {"api_key": "***", "hf_token": "***",
                                                 "n_ctx": 8192}
    assert kept["judge"]["api_key_env"] == "JUDGE_KEY"  # a variable's name, not a secret
    assert "token: abcd1234?" in raw


def test_an_old_store_has_its_secrets_scrubbed_on_open(tmp_path: Path) -> None:
    """A store written before scrubbing held ``--provider-option api_key=...`` in plain text
    in its settings; the migration that brings it up to date masks it."""
    path = tmp_path / STORE_FILENAME
    db = sqlite3.connect(path, isolation_level=None)
    old = [fn for fn in MIGRATIONS if fn.__name__ in ("m001_initial", "m002_documents")]
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for fn in old:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
    db.execute("INSERT INTO meta VALUES ('run_config', ?)", (json.dumps(
        {"score": {"judge": {"provider_options": {"api_key": KEY}}}}),))
    db.execute("INSERT INTO meta VALUES ('serve.prompt.p', ?)", (json.dumps(
        {"document": "d", "query": f"Is {KEY} a key?"}),))
    db.close()
    with RunStore(tmp_path) as store:
        assert store.get_meta("run_config") == {
            "score": {"judge": {"provider_options": {"api_key": "***"}}}}
        assert store.get_meta("serve.prompt.p")["query"] == f"Is {KEY} a key?"


def test_the_score_command_keeps_no_provider_option_secret(judge_double, tmp_path: Path
                                                           ) -> None:
    """As the issue measured it: ``longreward score --provider-option api_key=...``."""
    data = tmp_path / "answers.jsonl"
    data.write_text(json.dumps({"id": "a", "context": "The board approved line 3.",
                                "query": "What was approved?", "response": "Line 3."}) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "longreward", "score", str(data), "-o", str(tmp_path / "o.jsonl"),
         "--run-dir", str(tmp_path / "run"), "--base-url", judge_double.base_url, "--model",
         "judge-double", "--no-progress", "--provider-option", f"api_key={KEY}"],
        env={**os.environ, "NO_COLOR": "1", "LONGREWARD_API_KEY": "sk-test-judge-key"},
        capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    raw = _raw_meta(tmp_path / "run" / STORE_FILENAME)
    assert "provider_options" in raw and KEY not in raw
    assert KEY not in (tmp_path / "run" / "lock").read_text()
