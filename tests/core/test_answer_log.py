"""The response cache's answer log: answers survive ``kill -9`` and reach SQLite in batches."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from promptopt.backends import ResponseCache

fcntl = pytest.importorskip("fcntl", reason="the answer log needs advisory file locks")


def rows_in_sqlite(path: Path) -> int:
    """What another process reading the database sees, without moving any log in."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def logs(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".answers-*.log"))


KILLED_AFTER_STORING = textwrap.dedent("""
    import os, signal, sys
    from promptopt.backends import ResponseCache

    cache = ResponseCache(sys.argv[1], flush_seconds=3600)
    cache.put_many({f"k{i}": {"text": f"answer {i}", "note": "tab\\there"} for i in range(5)})
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_answers_of_a_killed_process_are_moved_in_by_the_next_opener(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    done = subprocess.run([sys.executable, "-c", KILLED_AFTER_STORING, str(path)], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    assert rows_in_sqlite(path) == 0 and len(logs(path)) == 1  # only the log holds them

    cache = ResponseCache(path)
    assert cache.get_many([f"k{i}" for i in range(5)]) == {
        f"k{i}": {"text": f"answer {i}", "note": "tab\there"} for i in range(5)}
    assert rows_in_sqlite(path) == 5
    assert logs(path) == [] or logs(path) == [cache._log_path]  # the dead one's log is gone; ours is new
    cache.close()
    assert logs(path) == []


def test_a_live_process_keeps_its_log_until_it_moves_it_in(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = ResponseCache(path, flush_seconds=3600)
    writer.put_many({"k": {"text": "paid"}})
    reader = ResponseCache(path)  # another open file, so its flock conflicts, as another process's would
    assert reader.get_many(["k"]) == {}  # not moved in yet, and not taken from a live writer
    assert len(logs(path)) == 2
    writer.close()
    assert reader.get_many(["k"]) == {"k": {"text": "paid"}}
    reader.close()
    assert logs(path) == []


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ResponseCache(path).close()
    log = path.with_name(path.name + ".answers-deadbeef.log")
    log.write_text('"a"\t{"text": "one"}\n"b"\t{"text": "two"}\n"c"\t{"text": "th', encoding="utf-8")
    cache = ResponseCache(path)
    assert cache.get_many(["a", "b", "c"]) == {"a": {"text": "one"}, "b": {"text": "two"}}
    assert not log.exists()
    cache.close()


def test_answers_move_into_sqlite_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, flush_seconds=3600, flush_answers=3)
    cache.put_many({"a": {"text": "1"}})
    cache.put_many({"b": {"text": "2"}})
    assert rows_in_sqlite(path) == 0
    assert cache.get_many(["a", "b"]) == {"a": {"text": "1"}, "b": {"text": "2"}}  # read from the waiting ones
    cache.put_many({"c": {"text": "3"}})
    assert rows_in_sqlite(path) == 3
    assert cache._log_path is not None and cache._log_path.stat().st_size == 0  # moved, so the log is emptied
    cache.close()

    at_once = ResponseCache(path, flush_seconds=0)
    at_once.put_many({"d": {"text": "4"}})
    assert rows_in_sqlite(path) == 4
    at_once.close()


def test_close_moves_everything_in_and_leaves_no_log(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, flush_seconds=3600)
    cache.put_many({f"k{i}": {"text": str(i)} for i in range(7)})
    assert rows_in_sqlite(path) == 0
    cache.close()
    assert rows_in_sqlite(path) == 7 and logs(path) == []
