"""Loading a third-party class named by an entry point (strategies, backends)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

from promptopt.exceptions import ConfigError

__all__ = ["load_plugin_class"]


def load_plugin_class(ep: EntryPoint, base: type, kind: str) -> Any:
    """Import the class ``ep`` names, a subclass of ``base``; a broken plugin is a clear ConfigError, not a crash."""
    try:
        cls = ep.load()
    except Exception as exc:  # any import-time failure of someone else's package
        raise ConfigError(f"{kind} plugin {ep.name!r} ({ep.value}) failed to import: {exc}; "
                          "reinstall or uninstall the package that provides it") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{kind} plugin {ep.name!r} ({ep.value}) is not a promptopt {base.__name__} subclass; "
                          "reinstall or uninstall the package that provides it")
    return cls
