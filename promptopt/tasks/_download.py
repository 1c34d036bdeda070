"""Dataset files on disk: find them in the data folder, or download and check them.

Every file a built-in task reads is listed in ``sources.json`` (package data,
generated from the benchmark data ``MANIFEST.json``) with its SHA-256 and, where
one exists, the pinned upstream URL. GSM8K and BIG-Bench Hard files are
byte-for-byte the upstream files at a fixed commit, so they download from
GitHub. The classification sets are derived files with no upstream copy; they
come from a mirror (``base_url``) with the same layout as the data folder.

This module reads no environment variables: the caller (the API or CLI) turns
``PROMPTOPT_DATA_DIR`` / ``PROMPTOPT_DATA_URL`` into ``root`` / ``base_url``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from promptopt.exceptions import DataError

__all__ = ["DataStore", "FileSource", "default_data_dir", "load_sources"]

_CHUNK = 1 << 16
_TIMEOUT_S = 60.0
_FIX = "point --data-dir (or PROMPTOPT_DATA_DIR) at a folder holding {rel}"


@dataclass(frozen=True)
class FileSource:
    """Where one dataset file comes from and what its bytes must hash to.

    Attributes:
        path: path relative to the data folder, e.g. ``"gsm8k/train.jsonl"``.
        sha256: hex digest of the exact bytes.
        url: pinned upstream URL, or None for derived files (mirror only).
    """

    path: str
    sha256: str
    url: str | None


def load_sources() -> dict[str, FileSource]:
    """The embedded table of known dataset files, keyed by relative path."""
    text = resources.files("promptopt.tasks").joinpath("sources.json").read_text("utf-8")
    rows = json.loads(text)["files"]
    return {r["path"]: FileSource(r["path"], r["sha256"], r["url"]) for r in rows}


def default_data_dir() -> Path:
    """The per-user cache folder for datasets (``<user cache dir>/promptopt/data``).

    Environment variables are not consulted; the caller applies
    ``PROMPTOPT_DATA_DIR`` before falling back to this.
    """
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("promptopt")) / "data"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DataStore:
    """Local dataset files under ``root``, fetched on first use.

    Args:
        root: the data folder; files live at ``root / <relative path>``.
        base_url: a mirror root with the same layout as the data folder
            (``<base_url>/gsm8k/train.jsonl``). When set it replaces every
            upstream source.
        offline: never touch the network; a missing file is an error.

    Example:
        >>> store = DataStore(Path("/nonexistent"), offline=True)
        >>> store.url("gsm8k/test.jsonl").startswith("https://raw.githubusercontent.com/")
        True
    """

    def __init__(self, root: Path, *, base_url: str | None = None, offline: bool = False) -> None:
        self.root = Path(root)
        self.base_url = base_url
        self.offline = offline
        self._sources = load_sources()
        self._verified: set[str] = set()

    def __repr__(self) -> str:
        return f"DataStore(root={str(self.root)!r}, base_url={self.base_url!r}, offline={self.offline})"

    def source(self, relpath: str) -> FileSource:
        """The table entry for ``relpath``.

        Raises:
            DataError: the file is not one promptopt knows.
        """
        try:
            return self._sources[relpath]
        except KeyError:
            raise DataError(
                f"unknown data file {relpath!r}; known files look like 'gsm8k/train.jsonl' "
                "(see promptopt/tasks/sources.json)") from None

    def url(self, relpath: str) -> str | None:
        """Where ``relpath`` downloads from: the mirror if set, else upstream (or None)."""
        src = self.source(relpath)
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{relpath}"
        return src.url

    def path(self, relpath: str) -> Path:
        """The local path of a dataset file, downloading it if needed.

        A file already in the folder is checked against its SHA-256 (once per
        store). A missing one is downloaded, checked, and moved into place
        atomically, so an interrupted download never leaves a partial file.

        Raises:
            DataError: unknown file; missing while offline, without a source,
                or after a failed download; or bytes whose SHA-256 is wrong.
        """
        src = self.source(relpath)
        target = self.root / relpath
        if target.is_file():
            if relpath not in self._verified:
                self._check(target, src, origin=str(target),
                            fix="delete it to download it again, or restore the original file")
                self._verified.add(relpath)
            return target
        self._download(src, target)
        self._verified.add(relpath)
        return target

    def _download(self, src: FileSource, target: Path) -> None:
        rel = src.path
        where = f"{rel!r} is not in the data folder {self.root}"
        if self.offline:
            raise DataError(f"data file {where} and offline mode is on; "
                            f"{_FIX.format(rel=rel)} or allow network access")
        url = self.url(rel)
        if url is None:
            raise DataError(
                f"data file {where} and has no public download (it is derived from EvoPrompt and "
                f"rl-prompt data); {_FIX.format(rel=rel)}, or set PROMPTOPT_DATA_URL to a mirror "
                "with the same layout as the promptopt benchmark data folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _copy_url(url, out, rel=rel, root=self.root)
            self._check(tmp, src, origin=url, fix="check the mirror or the network and retry")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    @staticmethod
    def _check(path: Path, src: FileSource, *, origin: str, fix: str) -> None:
        got = sha256_of(path)
        if got != src.sha256:
            raise DataError(f"sha256 mismatch for data file {src.path!r} from {origin}: "
                            f"expected {src.sha256}, got {got}; {fix}")


def _copy_url(url: str, out: BinaryIO, *, rel: str, root: Path) -> None:
    """Stream ``url`` into the binary file ``out``; any failure becomes a DataError."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # it holds the open response; leaving it to the GC leaks the socket
            reason: object = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"could not download data file {rel!r} from {url} ({reason}) and it is not in the data "
            f"folder {root}; {_FIX.format(rel=rel)}, set PROMPTOPT_DATA_URL to a mirror, "
            "or check network access"
        ) from exc
