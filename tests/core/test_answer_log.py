"""The response cache's answer log: answers survive ``kill -9`` and reach SQLite in batches."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from promptopt.backends import ResponseCache, _answer_log
from promptopt.backends._answer_log import AnswerLog, parse_log
from promptopt.exceptions import ConfigError

pytest.importorskip("fcntl", reason="the answer log needs advisory file locks")


def rows_in_sqlite(path: Path) -> int:
    """What another process reading the database sees, without moving any log in."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def logs(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".answers-*.log"))


def own_log(cache: ResponseCache) -> Path:
    assert cache._log is not None
    return cache._log.path


# Values with a tab and the characters str.splitlines() would break a line at; keys that JSON must escape.
ODD = {"k0": {"text": "tab\there"}, "k1": {"text": "line\u2028sep"}, "k2": {"text": "para\u2029sep"},
       "k3": {"text": "next\x85line"}, "k4": {"text": "plain"},
       'a "key"\twith\nescapes\\': {"text": "odd key"}, "clé\u2028": {"text": "non-ASCII key"}}

KILLED_AFTER_STORING = textwrap.dedent("""
    import json, os, signal, sys
    from promptopt.backends import ResponseCache

    cache = ResponseCache(sys.argv[1], flush_seconds=3600)
    cache.put_many(json.loads(sys.argv[2]))
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_answers_of_a_killed_process_are_moved_in_by_the_next_opener(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    done = subprocess.run([sys.executable, "-c", KILLED_AFTER_STORING, str(path), json.dumps(ODD)],
                          capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    assert rows_in_sqlite(path) == 0 and len(logs(path)) == 1  # only the log holds them

    cache = ResponseCache(path)
    assert cache.get_many(list(ODD)) == ODD
    assert rows_in_sqlite(path) == len(ODD)
    assert logs(path) == [own_log(cache)]  # the dead one's log is gone
    cache.close()
    assert logs(path) == []


def test_a_live_process_keeps_its_log_until_it_moves_it_in(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = ResponseCache(path, flush_seconds=3600)
    writer.put_many({"k": {"text": "paid"}})
    reader = ResponseCache(path)
    assert reader.get_many(["k"]) == {}  # not moved in yet, and not taken from a live writer
    assert len(logs(path)) == 2
    writer.close()
    assert reader.get_many(["k"]) == {"k": {"text": "paid"}}
    reader.close()
    assert logs(path) == []


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ResponseCache(path).close()
    log = path.with_name(path.name + ".answers-0123456789ab.log")
    log.write_text('\n"a"\t{"text": "one"}\n"b"\t{"text": "two"}\n\n"c"\t{"text": "th', encoding="utf-8")
    cache = ResponseCache(path)
    assert cache.get_many(["a", "b", "c"]) == {"a": {"text": "one"}, "b": {"text": "two"}}
    assert not log.exists()
    cache.close()


def test_a_write_that_failed_halfway_does_not_swallow_the_next_answer(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    log = AnswerLog.create(tmp_path / "c.sqlite")
    assert log is not None
    real_write = os.write

    def half_then_full_disk(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_answer_log.os, "write", half_then_full_disk)
    with pytest.raises(OSError):
        log.append({"lost": '{"text": "cut short"}'})
    monkeypatch.setattr(_answer_log.os, "write", real_write)
    log.append({"kept": '{"text": "whole"}'})
    assert parse_log(log.path.read_bytes()) == [("kept", '{"text": "whole"}')]
    log.close(delete=True)


def test_answers_move_into_sqlite_at_a_count_on_a_timer_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, flush_seconds=3600, flush_answers=3)
    cache.put_many({"a": {"text": "1"}})
    cache.put_many({"b": {"text": "2"}})
    assert rows_in_sqlite(path) == 0
    assert cache.get_many(["a", "b"]) == {"a": {"text": "1"}, "b": {"text": "2"}}  # read from the waiting ones
    cache.put_many({"c": {"text": "3"}})
    assert rows_in_sqlite(path) == 3
    assert own_log(cache).stat().st_size == 0  # moved, so the log is emptied
    cache.put_many({"d": {"text": "4"}})
    cache.close()
    assert rows_in_sqlite(path) == 4 and logs(path) == []

    timed = ResponseCache(path, flush_seconds=0.05)
    timed.put_many({"e": {"text": "5"}})  # and nothing after it: the timer moves it in
    deadline = time.monotonic() + 5
    while rows_in_sqlite(path) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rows_in_sqlite(path) == 5
    timed.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("child_does", ["close", "len", "put"])
def test_a_forked_child_leaves_the_parents_log_alone(tmp_path: Path, child_does: str) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, flush_seconds=3600)
    cache.put_many({"parent": {"text": "p"}})
    pid = os.fork()
    if pid == 0:  # exit 0: closed quietly; 3: refused with the error that says to open a cache of its own
        code = 1
        try:
            if child_does == "close":
                cache.close()
                code = 0
            elif child_does == "len":
                len(cache)
            else:
                cache.put_many({"child": {"text": "c"}})
        except ConfigError as exc:
            code = 3 if "open a new ResponseCache(path) in the child" in str(exc) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == (0 if child_does == "close" else 3)
    assert parse_log(own_log(cache).read_bytes()) == [("parent", '{"text": "p"}')]  # untouched
    cache.close()
    assert ResponseCache(path).get_many(["parent"]) == {"parent": {"text": "p"}}


def test_an_opener_takes_only_its_own_caches_logs(tmp_path: Path) -> None:
    other = tmp_path / "c.sqlite.answers-x"  # another cache, whose name starts like our logs'
    ResponseCache(other).close()
    other.with_name(other.name + ".answers-0123456789ab.log").write_text('"a"\t{"text": "theirs"}\n',
                                                                          encoding="utf-8")
    ResponseCache(tmp_path / "c.sqlite").close()
    assert ResponseCache(other).get_many(["a"]) == {"a": {"text": "theirs"}}
    assert rows_in_sqlite(tmp_path / "c.sqlite") == 0


def test_a_log_open_in_this_process_is_never_taken_even_where_flock_is_per_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # On some network file systems flock is emulated with per-process locks: our own
    # live log would look free to a second opener in this process.
    monkeypatch.setattr(_answer_log.fcntl, "flock", lambda fd, operation: None)
    writer = ResponseCache(tmp_path / "c.sqlite", flush_seconds=3600)
    writer.put_many({"k": {"text": "paid"}})
    monkeypatch.chdir(tmp_path)
    reader = ResponseCache(Path("c.sqlite"))  # the same file, spelled another way
    assert own_log(writer).exists() and reader.get_many(["k"]) == {}
    reader.close()
    writer.close()


def test_a_new_log_taken_by_another_opener_before_it_was_locked_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_flock = _answer_log.fcntl.flock
    taken: list[int] = []

    def another_opener_was_faster(fd: int, operation: int) -> None:
        if not taken:  # as an opener would that found the new file unlocked: it deletes it
            taken.append(fd)
            next(iter(logs(tmp_path / "c.sqlite"))).unlink()
        real_flock(fd, operation)

    monkeypatch.setattr(_answer_log.fcntl, "flock", another_opener_was_faster)
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert taken and own_log(cache).exists()
    cache.close()


def test_without_file_locks_each_answer_is_committed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_answer_log.fcntl, "flock", no_locks)
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, flush_seconds=3600)
    cache.put_many({"a": {"text": "1"}})
    assert rows_in_sqlite(path) == 1 and logs(path) == []
    cache.close()


def test_an_old_log_does_not_overwrite_an_answer_stored_since(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put_many({"a": {"text": "new"}})
    cache.close()
    path.with_name(path.name + ".answers-0123456789ab.log").write_text('"a"\t{"text": "old"}\n', encoding="utf-8")
    assert ResponseCache(path).get_many(["a"]) == {"a": {"text": "new"}}


def test_a_log_that_cannot_be_deleted_at_close_raises_that_error_with_the_answers_moved_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path, flush_seconds=3600)
    cache.put_many({"a": {"text": "1"}})

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(PermissionError, match="Permission denied"):
        cache.close()
    monkeypatch.undo()
    assert rows_in_sqlite(path) == 1
    with pytest.raises(sqlite3.ProgrammingError):  # closed all the same
        cache._db.execute("SELECT 1")
