"""Fixtures for task tests: the shared benchmark data folder and a local HTTP mirror."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

#: the benchmark data folder beside the repository (``<repo>/../shared/data``)
DEFAULT_DATA_DIR = Path(__file__).parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$PROMPTOPT_DATA_DIR`` if set, else the shared data folder beside the repository."""
    root = Path(os.environ.get("PROMPTOPT_DATA_DIR") or DEFAULT_DATA_DIR)
    if not (root / "MANIFEST.json").is_file():
        pytest.fail(f"benchmark data not found at {root}; set PROMPTOPT_DATA_DIR to the shared data folder")
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging to stderr; records each requested path."""

    requested: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.requested.append(self.path)
        super().do_GET()


@contextmanager
def serve_directory(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root`` over HTTP on 127.0.0.1; yields the base URL and the list of requested paths."""
    requested: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requested": requested})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_mirror() -> Callable[[Path], Any]:
    """A context-manager factory: ``with http_mirror(folder) as (base_url, requested): ...``."""
    return serve_directory
