"""Start and stop a real llama.cpp OpenAI-compatible server, for tests and benchmarks.

The server is ``python -m llama_cpp.server`` (from ``llama-cpp-python[server]``)
serving a GGUF file, by default the embedded SmolLM2-135M-Instruct, on a free
local port. It runs in a child process that is always stopped on exit.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from promptopt.backends.llamacpp import smollm2_path
from promptopt.exceptions import BackendError, ConfigError

__all__ = ["free_port", "run_llama_server", "smollm2_path"]

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_llama_server(
    model_path: str | None = None,
    *,
    port: int | None = None,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    model_alias: str | None = None,
    startup_timeout: float = 120.0,
    deterministic: bool = True,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` for the duration of a ``with`` block.

    Args:
        model_path: GGUF file to serve; defaults to :func:`smollm2_path`.
        port: port on 127.0.0.1; a free one is picked if not given.
        n_ctx: context window in tokens.
        n_threads: CPU threads; defaults to half the logical cores for generation
            (llama.cpp threads spin while they wait, so using every core slows
            generation badly, several times over, when anything else is busy) and all
            of them for prompt evaluation (the server's own default). A number given
            here is used for both.
        model_alias: the model id the server lists; ``"smollm2"`` for the default
            model, else the file's stem. (The server answers any model name.)
        startup_timeout: seconds to wait for ``/v1/models`` to answer.
        deterministic: evaluate prompts one token at a time (``--n_batch 1``), so a
            temperature-0 reply does not depend on what the server answered before.
            llama-cpp-python reuses the KV cache of the previous prompt's common
            prefix, and a differently sized batch rounds differently, which can flip
            a greedy choice. Costs prompt-processing speed; turn off for throughput.
        extra_args: more ``llama_cpp.server`` flags, e.g. ``("--n_batch", "64")``.

    Yields:
        The base URL, ``http://127.0.0.1:<port>/v1``.

    Raises:
        ConfigError: if ``llama-cpp-python`` or the model file is missing.
        BackendError: if the server exits or does not answer in time; the
            message ends with the last lines of its log.

    Example:
        >>> from promptopt.backends.openai import OpenAIBackend
        >>> with run_llama_server() as base_url:  # doctest: +SKIP
        ...     backend = OpenAIBackend(model="smollm2", base_url=base_url)
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            "running a llama.cpp server needs llama-cpp-python; "
            "run `pip install 'llama-cpp-python[server]'`")
    if model_path is None:
        model_path = smollm2_path()
        model_alias = model_alias or "smollm2"
    elif not Path(model_path).is_file():
        raise ConfigError(f"the model_path of run_llama_server must be a GGUF file; "
                          f"got {model_path!r}, which does not exist")
    port = port or free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", model_path,
        "--model_alias", model_alias or Path(model_path).stem,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads or max(1, (os.cpu_count() or 2) // 2)),
        # an explicit count bounds prompt evaluation too (the server's default for it is every core)
        *(["--n_threads_batch", str(n_threads)] if n_threads else []),
        "--use_mlock", "False",  # locking pages fails under low ulimits in containers
        "--verbose", "False",
        *(["--n_batch", "1", "--n_ubatch", "1"] if deterministic else []),
        *extra_args,
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(process, base_url, startup_timeout, log)
            yield base_url
        finally:
            _stop(process)


def _wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, timeout: float, log: IO[str],
) -> None:
    """Poll ``/v1/models`` until it answers, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BackendError(
                f"the llama.cpp server exited with code {process.returncode} before "
                "answering; is `llama-cpp-python[server]` installed? Log:\n" + _tail(log))
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise BackendError(
        f"the llama.cpp server at {base_url} did not answer within {timeout:g}s; "
        "raise startup_timeout. Log:\n" + _tail(log))


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate the server, killing it if it has not exited after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def _tail(log: IO[str], n_lines: int = 20) -> str:
    log.flush()
    log.seek(0)
    return "".join(log.readlines()[-n_lines:])
