"""The HTTP process's front door: API key, body size, a bounded wait, and 503s when the service is going away.

A pure ASGI middleware, so that it decides before FastAPI reads or parses anything:

- **API key**: with a key set, every path but /health and / answers 401 unless the request's ``X-API-Key``
  header holds it (compared in constant time); the body is not read. LitServe's own key
  (``LIT_SERVER_API_KEY``) would close /health to load balancers' probes as well, and a browser cannot
  send a header when it opens the page, which then asks for the key and sends it itself.
- **Body size**: a ``Content-Length`` above ``max_body_bytes`` gets 413 before a byte is read; a body
  without one (chunked) is read only up to the limit. LitServe's ``max_payload_size`` counts bytes only
  as the endpoint reads them and ignores ``Content-Length``.
- **Bounded wait**: a /translate request that has no answer ``timeout`` seconds after it arrived gets a
  504, whatever happens behind it (LitServe's own timeout covers only the time a request waits in the
  queue, not a worker that never answers).
- **Going away**: SIGUSR1 (sent by the supervising main process when another process of the service
  died) answers every request in flight and every later one with 503 at once, and /health with 503;
  requests cut short by the end of the SIGTERM grace period get a 503 too, instead of a dropped
  connection.
"""
import asyncio
import hmac
import json
import signal
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

OPEN_PATHS = ("/health", "/")  # probes carry no key; the page holds no data and asks for the key itself
ERRORS_SHOWN, LOC_CHARS, MSG_CHARS = 8, 32, 200  # what a 422 may show: at most ~1 KiB of the input


async def answer(send: Send, status: int, detail: str) -> None:
    """A complete JSON answer {"detail": ...} that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """See the module's docstring. ``api_key`` None or empty: no key asked."""

    def __init__(self, app: Callable, *, api_key: str | None, max_body_bytes: int, timeout: float) -> None:
        self.app, self.api_key, self.max_body_bytes, self.timeout = app, api_key or None, max_body_bytes, timeout
        self.going_away = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.going_away.set)
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.going_away.is_set():
            return await answer(send, 503, "the service is stopping; retry once it is back")
        if path not in OPEN_PATHS and not self._has_key(scope):
            return await answer(send, 401, "this service needs an API key: send it in the X-API-Key header")
        if self._declared_length(scope) > self.max_body_bytes:
            return await answer(send, 413, f"the body is larger than max_body_bytes ({self.max_body_bytes} bytes)")
        body = await self._body(receive)
        if body is None:
            return await answer(send, 413, f"the body is larger than max_body_bytes ({self.max_body_bytes} bytes)")
        replay = _replaying(body, receive)
        if path == "/translate":
            return await self._bounded(scope, replay, send)
        return await self.app(scope, replay, send)

    def _has_key(self, scope: Scope) -> bool:
        if self.api_key is None:
            return True
        given = dict(scope["headers"]).get(b"x-api-key", b"")
        return hmac.compare_digest(given, self.api_key.encode())

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        try:
            return int(dict(scope["headers"]).get(b"content-length", b"0"))
        except ValueError:
            return 0  # uvicorn refuses a malformed Content-Length before it gets here

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes max_body_bytes (the rest is never read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client left; the app sees an empty body and the disconnect
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's answer, or a 503 (going away, grace period over) or 504 (timeout) in its place."""
        started = False

        async def sending(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, sending))
        going = asyncio.ensure_future(self.going_away.wait())
        try:
            done, _ = await asyncio.wait({work, going}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # uvicorn's grace period ended before the answer
            work.cancel()
            if started:
                raise
            # the cancellation wanted this request ended, and answering ends it: nothing to propagate
            return await answer(send, 503, "the service stopped before this request was translated; retry")
        finally:
            going.cancel()
        if work in done:
            return work.result()
        if started:
            return await work  # the answer is already on its way
        work.cancel()
        if going in done:
            return await answer(send, 503, "the service lost one of its processes and is stopping; retry "
                                           "once it is back")
        return await answer(send, 504, f"no translation within the service's timeout ({self.timeout:g} s)")


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then whatever the connection says (a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay


async def short_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 without pydantic's ``input`` (the offending value, which can be the whole body) and with
    locations and messages cut short, so that an error answer never echoes more than ~1 KiB of the input."""
    detail = [{"type": e.get("type"), "loc": [p if isinstance(p, int) else str(p)[:LOC_CHARS] for p in e.get("loc", ())],
               "msg": str(e.get("msg", ""))[:MSG_CHARS]} for e in error.errors()[:ERRORS_SHOWN]]
    return JSONResponse({"detail": detail}, status_code=422)
