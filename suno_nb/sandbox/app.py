"""The sandbox's HTTP face: a Starlette app served by :class:`suno_nb.server.ServerThread`.

The API routes come from the provider's contract table (``Sandbox(provider="kie.ai")``
serves credits at ``/api/v1/chat/credit``), need the Bearer key, and answer like the hosted
API: HTTP 200 with the outcome in the JSON ``code``.  The result files are served like a
public CDN (no auth) from memory by :class:`~.ranges.BytesResponse`, with
``Range``/``HEAD``/``416`` for audio players that seek.

Every endpoint is ``async def`` and answers on the server's loop: Starlette never hands
work to AnyIO's thread pool.  The service's operations are short bookkeeping; the only
slow work, rendering a file the first time, goes to the sandbox's worker pool
(:meth:`~.runtime.Runtime.blocking`).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..contract import Provider
from ..errors import PayloadError
from ..payloads import decode_json
from .delivery import public_url
from .limits import Limiter, refusal
from .links import MediaDesk
from .ranges import BytesResponse
from .runtime import Stopped
from .service import Service
from .validate import DROPPED, Reply

log = logging.getLogger("suno_nb.sandbox")

_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
_FILE = re.compile(r"^([0-9a-fA-F-]{8,64})\.(mp3|png)$")
_CACHE = {"Cache-Control": "public, max-age=86400"}
_TYPES = {"mp3": "audio/mpeg", "png": "image/png"}
_WAV = re.compile(r"^([0-9a-f]{32})\.wav$")

Endpoint = Callable[[Request], Awaitable[Response]]


def _json(status: int, doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse(doc, status_code=status)


def _reply(reply: Reply) -> Response:
    return _Dropped() if reply[0] == DROPPED else _json(*reply)


class _Dropped(Response):
    """Accepted, then the connection drops: the status line and headers go out, the body
    never does, and the server closes the connection (``Faults(drop_connection=True)``)."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # Returning without the body makes the server close the connection.


def build_app(
    service: Service,
    *,
    provider: Provider,
    api_key: str,
    limiter: Limiter | None = None,
    media: MediaDesk | None = None,
) -> Starlette:
    """The Starlette app of one sandbox's ``service`` (routes from ``provider``); with a
    ``limiter``, requests past the key's rate limit are refused like the provider does;
    with ``media``, links can expire and the WAV and recovery routes are served."""
    routes = provider.routes
    expected = f"Bearer {api_key}".encode()

    def authorized(request: Request) -> JSONResponse | None:
        given = request.headers.get("authorization")
        if not given:
            msg = "Unauthorized: send the header 'Authorization: Bearer <API key>'"
            return _json(401, {"code": 401, "msg": msg})
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
            return _json(401, {"code": 401, "msg": "Unauthorized: invalid API key"})
        if limiter is not None:  # counted per key, so only once the key is known
            task = request.query_params.get("taskId") if request.method == "GET" else None
            wait = limiter.check(task)
            if wait is not None:
                (status, doc), headers = refusal(limiter.limit, wait)
                return JSONResponse(doc, status_code=status, headers=headers)
        return None

    def guarded(fn: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except Stopped:
                return _json(503, {"code": 503, "msg": "the sandbox is stopping"})
            except Exception as exc:  # answer, log, keep serving
                where = public_url(str(request.url))  # ids shortened, no query
                log.exception("sandbox route %s %s failed", request.method, where)
                msg = f"sandbox internal error: {type(exc).__name__}"
                return _json(500, {"code": 500, "msg": msg})

        return endpoint

    def post(op: Callable[[Any], Reply]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            refused = authorized(request)
            if refused is not None:
                return refused
            raw = await request.body()
            try:
                body = decode_json(raw) if raw else None
            except PayloadError as exc:
                return _json(200, {"code": 400, "msg": f"request body is not valid JSON: {exc}"})
            return _reply(op(body))  # bookkeeping under a short lock: fine on the loop

        return guarded(endpoint)

    async def record_info(request: Request) -> Response:
        refused = authorized(request)
        task_id = request.query_params.get("taskId", "")
        return refused or _reply(service.record_info(task_id))

    async def credit(request: Request) -> Response:
        return authorized(request) or _reply(service.credit())

    async def audio(request: Request, audio_id: str, ext: str) -> Response:
        if media is not None:  # a recovered file name, or an expired link
            track_id = media.resolve(audio_id)
            if track_id is None:
                # The hosted CDN's exact answer to an expired link is not documented: 404.
                return _json(404, {"code": 404, "msg": "this link has expired"})
            audio_id = track_id
        published, data = service.peek_file(audio_id, ext)
        if published and data is None:  # the first request for it: render off the loop
            runtime = service.runtime
            if runtime is None:
                raise Stopped("the sandbox is not running")
            data = await runtime.blocking(service.file_bytes, audio_id, ext)
        if data is None:
            return _json(404, {"code": 404, "msg": "no such file (unknown id, or not ready)"})
        # Audio is a pure function of the track, so the id (and the kind) is a strong ETag.
        return BytesResponse(data, media_type=_TYPES[ext], etag=f"{audio_id}-{ext}", headers=_CACHE)

    async def file_route(request: Request) -> Response:
        m = _FILE.match(request.path_params["name"])
        if m is None:
            return _json(404, {"code": 404, "msg": f"no route {request.url.path}"})
        return await audio(request, m.group(1), m.group(2))

    async def stream_route(request: Request) -> Response:
        audio_id = request.path_params["audio_id"]
        if not _ID.match(audio_id):
            return _json(404, {"code": 404, "msg": f"no route {request.url.path}"})
        return await audio(request, audio_id, "mp3")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            msg = f"method {request.method} not allowed on {request.url.path}"
        elif status == 404:
            msg = f"no route {request.url.path}"
        else:
            msg = getattr(exc, "detail", "error")
        return _json(status, {"code": status, "msg": msg})

    # kie.ai's task API has no generate route in the contract: its createTask serves
    # replace-section (service.replace_section reads the task body's shape).
    generate = routes.get("generate")
    submit = [Route(generate, post(service.generate), methods=["POST"])] if generate else []
    lyrics = routes.get("timestamped-lyrics")  # not every provider has it
    if lyrics:
        submit.append(Route(lyrics, post(service.timestamped_lyrics), methods=["POST"]))
    if media is not None and "wav" in routes and "recovery" in routes:
        submit += _media_routes(media, routes, post, guarded, authorized)
    return Starlette(
        routes=[
            *submit,
            Route(routes["replace-section"], post(service.replace_section), methods=["POST"]),
            Route(routes["record-info"], guarded(record_info), methods=["GET"]),
            Route(routes["credits"], guarded(credit), methods=["GET"]),
            Route("/files/{name}", guarded(file_route), methods=["GET", "HEAD"]),
            Route("/stream/{audio_id}", guarded(stream_route), methods=["GET", "HEAD"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


def _media_routes(
    media: MediaDesk,
    routes: Any,
    post: Callable[[Any], Endpoint],
    guarded: Callable[[Endpoint], Endpoint],
    authorized: Callable[[Request], JSONResponse | None],
) -> list[Route]:
    """WAV conversion (and its details and files) and Recovery Audio."""

    async def wav_info(request: Request) -> Response:
        refused = authorized(request)
        return refused or _reply(media.wav_info(request.query_params.get("taskId", "")))

    async def wav_file(request: Request) -> Response:
        m = _WAV.match(request.path_params["name"])
        data = media.wav_bytes(m.group(1)) if m else None
        if m is None or data is None:
            return _json(404, {"code": 404, "msg": "no such file (unknown id, or not ready)"})
        return BytesResponse(data, media_type="audio/wav", etag=f"{m.group(1)}-wav")

    found = [
        Route(routes["wav"], post(media.wav), methods=["POST"]),
        Route(routes["recovery"], post(media.recovery), methods=["POST"]),
        Route("/wav/{name}", guarded(wav_file), methods=["GET", "HEAD"]),
    ]
    if "wav-info" in routes:
        found.append(Route(routes["wav-info"], guarded(wav_info), methods=["GET"]))
    return found
