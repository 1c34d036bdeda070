"""DataStore: cached files, downloads from a real local HTTP mirror, sha256 checks, offline errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from promptopt.exceptions import DataError
from promptopt.tasks import DataStore, default_data_dir, load_task
from promptopt.tasks._download import load_sources

GSM8K_TEST = "gsm8k/test.jsonl"
SST2_LABELS = "cls/sst2/labels.json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sources_table_matches_manifest(data_dir: Path) -> None:
    manifest = json.loads((data_dir / "MANIFEST.json").read_text("utf-8"))
    sources = load_sources()
    assert set(sources) == {entry["path"] for entry in manifest}
    for entry in manifest:
        src = sources[entry["path"]]
        assert src.sha256 == entry["sha256"]
        if entry["path"].startswith("cls/"):
            assert src.url is None  # derived files: mirror only
        else:
            assert src.url == (f"https://raw.githubusercontent.com/{entry['source_repo']}/"
                               f"{entry['commit']}/{entry['source_path']}")


def test_existing_file_is_used_in_place(data_dir: Path) -> None:
    store = DataStore(data_dir, offline=True)
    assert store.path(GSM8K_TEST) == data_dir / GSM8K_TEST


def test_url_defaults_upstream_and_mirror_overrides_all(tmp_path: Path) -> None:
    upstream = DataStore(tmp_path)
    assert upstream.url("gsm8k/train.jsonl") == ("https://raw.githubusercontent.com/openai/grade-school-math/"
                                                 "3101c7d5072418e28b9008a6636bde82a006892c/"
                                                 "grade_school_math/data/train.jsonl")
    assert upstream.url(SST2_LABELS) is None
    mirror = DataStore(tmp_path, base_url="http://mirror.example/data/")
    assert mirror.url(SST2_LABELS) == "http://mirror.example/data/cls/sst2/labels.json"
    assert mirror.url("bbh/navigate.json") == "http://mirror.example/data/bbh/navigate.json"


def test_download_from_local_http_mirror(data_dir: Path, tmp_path: Path, http_mirror: Any) -> None:
    root = tmp_path / "cache"
    with http_mirror(data_dir) as (base_url, requested):
        store = DataStore(root, base_url=base_url)
        for rel in (GSM8K_TEST, SST2_LABELS):
            got = store.path(rel)
            assert got == root / rel
            assert got.read_bytes() == (data_dir / rel).read_bytes()
            assert _sha(got) == load_sources()[rel].sha256
        assert requested == [f"/{GSM8K_TEST}", f"/{SST2_LABELS}"]
        DataStore(root, base_url=base_url).path(GSM8K_TEST)  # cached now: no second request
        assert len(requested) == 2
    leftovers = [p.name for p in root.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_corrupted_download_is_rejected(data_dir: Path, tmp_path: Path, http_mirror: Any) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "gsm8k").mkdir(parents=True)
    bad = (data_dir / GSM8K_TEST).read_bytes().replace(b"#### 18", b"#### 19", 1)
    (mirror / GSM8K_TEST).write_bytes(bad)
    root = tmp_path / "cache"
    with http_mirror(mirror) as (base_url, _), pytest.raises(DataError) as info:
        DataStore(root, base_url=base_url).path(GSM8K_TEST)
    message = str(info.value)
    assert "sha256 mismatch" in message and GSM8K_TEST in message
    assert load_sources()[GSM8K_TEST].sha256 in message
    assert hashlib.sha256(bad).hexdigest() in message
    assert "\n" not in message
    assert list((root / "gsm8k").iterdir()) == []  # nothing half-written left behind


def test_missing_file_on_mirror(tmp_path: Path, http_mirror: Any) -> None:
    (tmp_path / "empty").mkdir()
    with http_mirror(tmp_path / "empty") as (base_url, _), pytest.raises(DataError) as info:
        DataStore(tmp_path / "cache", base_url=base_url).path(SST2_LABELS)
    message = str(info.value)
    assert "could not download" in message and "404" in message
    assert SST2_LABELS in message and str(tmp_path / "cache") in message and "PROMPTOPT_DATA_DIR" in message


def test_offline_and_not_cached(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        DataStore(tmp_path, offline=True).path(GSM8K_TEST)
    message = str(info.value)
    assert GSM8K_TEST in message and str(tmp_path) in message
    assert "offline" in message and "PROMPTOPT_DATA_DIR" in message and "network" in message
    assert "\n" not in message


def test_derived_file_without_mirror_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        DataStore(tmp_path).path("cls/trec/dev.jsonl")
    message = str(info.value)
    assert "cls/trec/dev.jsonl" in message and "PROMPTOPT_DATA_URL" in message and "PROMPTOPT_DATA_DIR" in message


def test_cached_file_with_wrong_bytes(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "cls" / "sst2").mkdir(parents=True)
    shutil.copy(data_dir / SST2_LABELS, tmp_path / SST2_LABELS)
    (tmp_path / SST2_LABELS).write_text('["positive", "negative"]', "utf-8")
    with pytest.raises(DataError, match=r"sha256 mismatch for data file 'cls/sst2/labels.json'"):
        DataStore(tmp_path, offline=True).path(SST2_LABELS)


def test_unknown_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data file 'gsm8k/dev.jsonl'"):
        DataStore(tmp_path).path("gsm8k/dev.jsonl")


def test_task_loads_through_mirror(data_dir: Path, tmp_path: Path, http_mirror: Any) -> None:
    with http_mirror(data_dir) as (base_url, requested):
        task = load_task("sst2", data_dir=tmp_path, base_url=base_url, n_dev=10)
    assert len(task.splits.dev) == 10
    assert sorted(requested) == sorted(f"/cls/sst2/{n}" for n in ("labels.json", "train.jsonl",
                                                                   "dev.jsonl", "test.jsonl"))


def test_default_data_dir_is_under_user_cache() -> None:
    path = default_data_dir()
    assert path.name == "data" and path.parent.name == "promptopt"
