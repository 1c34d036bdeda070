"""Rate limits as every HTTP backend reports them: the error, and the server's requested wait."""

from __future__ import annotations

import calendar
import email.utils
import math
import time
from collections.abc import Mapping

from promptopt.exceptions import BackendError

__all__ = ["RateLimitedError", "parse_retry_after"]


class RateLimitedError(BackendError):
    """The endpoint asked us to slow down (HTTP 429, or 503 with ``Retry-After``).

    Always retryable.

    Args:
        message: what happened, for a person.
        retry_after: seconds the server asked us to wait, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date); lower-case names."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    value = headers.get("retry-after")
    if value is None:
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    # An HTTP date is in GMT; timegm reads the tuple as UTC, then undo any offset.
    timestamp = calendar.timegm(parsed[:9]) - (parsed[9] or 0)
    return max(timestamp - time.time(), 0.0)
