"""The router's HTTP primitives over raw ASGI: one request, one response, one route, the body.

Why not Starlette or FastAPI: the predict path is a handful of microseconds of work, and a
framework's request/response objects, routing and middleware would cost more than the work
itself. The codecs (:mod:`~services.router.v1`, :mod:`~services.router.v2`) and the
application (:mod:`~services.router.app`) share these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from services.router.dataplane import Labels
from winemeup.errors import PayloadTooLarge, UnsupportedContentEncoding, UnsupportedMediaType

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"


@dataclass(slots=True)
class Request:
    """What a handler needs of one HTTP request."""

    scope: Scope
    receive: Receive
    headers: dict[bytes, bytes]
    max_body: int
    id: str = ""
    """The request id (``X-Request-ID``, accepted or generated): in the answer and the log."""
    labels: Labels = field(default_factory=Labels)

    @property
    def path_params(self) -> dict[str, str]:
        """Parameters of a templated path (``/v2/models/{name}``)."""
        params: dict[str, str] = self.scope.get("path_params", {})
        return params

    async def body(self) -> bytes:
        """The raw body, uncompressed and within ``max_body`` bytes (415 and 413 otherwise)."""
        encoding = self.headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b""):
            shown = encoding.decode(errors="replace")
            raise UnsupportedContentEncoding(
                f"Content-Encoding {shown} is not supported: send the body uncompressed"
            )
        limit = self.max_body
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(
                f"the body has {int(length)} bytes; at most {limit} are accepted (max_body_bytes)"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body exceeds {limit} bytes (max_body_bytes)")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def json_body(self) -> bytes:
        """The body of a JSON request, enforcing content type and size."""
        content_type = self.headers.get(b"content-type", b"")
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != JSON:
            shown = media.decode(errors="replace") or "none"
            raise UnsupportedMediaType(f"send the body as application/json (got content type {shown})")
        return await self.body()


@dataclass(slots=True)
class Response:
    """Status, body, content type and extra headers of one answer."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """One API route: method, path, handler and how it is guarded and documented."""

    method: str
    path: str
    handler: Handler
    auth: str  # "open", "user" or "admin"
    request_type: type[BaseModel] | None = None
    response_type: type[BaseModel] | None = None
    tag: str = "predictions"
    errors: dict[str, str] = field(default_factory=dict)
    """Error statuses beyond those of every body and every key (documentation only)."""
    media_type: str = "application/json"
    rows: bool = False
    """True for routes that score or explain rows (they count against the rows budget)."""
    single_row: bool = False
    """True when every request carries exactly one row: charged with the request itself."""
