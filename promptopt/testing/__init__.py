"""Test helpers shipped with promptopt: a fake backend and conformance checks.

:class:`FakeBackend` is for fast unit tests and for measuring promptopt's own
overhead; it is never the only proof that a feature works.
"""

from __future__ import annotations

from promptopt.testing._fake import FakeBackend
from promptopt.testing.fault_server import FaultPlan, run_fault_server
from promptopt.testing.llama_server import free_port, run_llama_server, smollm2_path

__all__ = ["FakeBackend", "FaultPlan", "free_port", "run_fault_server", "run_llama_server", "smollm2_path"]
