"""The request id in every log line written while a request is served, and keys as identifiers.

The application sets :data:`REQUEST_ID` for the duration of a request (``X-Request-ID``, accepted
or generated); :class:`RequestIdFilter` copies it into each log record as ``request_id``, so a
line with internal details (a runner's address, an upstream body) can be found from the id a
client reports. Keys never reach a log: :func:`key_id` names a key by a short digest.
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import ContextVar

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
"""The id of the request being served in this task ("-" outside requests)."""


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (for a ``%(request_id)s`` log format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def key_id(key: bytes | None) -> str:
    """A stable, non-reversible identifier of an API key for logs (``key:1a2b3c4d``)."""
    if not key:
        return "none"
    return "key:" + hashlib.blake2b(key, digest_size=4, person=b"wmu-key-id").hexdigest()
