"""`Idempotency-Key` on POSTs: the same key with the same request answers what the first one answered.

The first request with a key claims it (ApiTokenService.claim_key), runs, and its successful answer
(2xx: status, Location, body) is stored for a day; a failed one releases the key so it can be retried.
Requests that come while the first still runs wait for its answer — ten clients sending the same key at
once make one export. The same key with another body is refused with 409. Keys are per API token.
"""

import hashlib
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import ConflictError, PermissionDeniedError, StudioError
from core.services import Services

KEPT_HEADERS = ("content-type", "location")


def request_hash(scope: Scope, headers: Headers, body: bytes) -> str:
    """What makes two requests "the same": method, path, query and body (a multipart body without its
    random boundary, so a client library's fresh boundary does not make a retry look different)."""
    content_type = headers.get("content-type", "")
    if "boundary=" in content_type:
        boundary = content_type.split("boundary=", 1)[1].split(";", 1)[0].strip('"')
        body = body.replace(boundary.encode(), b"")
        content_type = content_type.split(";", 1)[0]
    digest = hashlib.sha256()
    for part in (scope["method"], scope.get("path", ""), scope.get("query_string", b"").decode(), content_type):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


class IdempotentPosts:
    def __init__(self, app: ASGIApp, services: Callable[[], Services]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scope["type"] != "http" or scope["method"] != "POST" or key is None or scheme.lower() != "bearer":
            await self.app(scope, receive, send)
            return
        tokens = self.services().api_tokens
        try:
            actor = await run_in_threadpool(tokens.authenticate, token.strip())
        except PermissionDeniedError:
            await self.app(scope, receive, send)  # the endpoint answers 401
            return
        scope.setdefault("state", {})["actor"] = actor
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            stored = await run_in_threadpool(tokens.claim_key, actor, key, request_hash(scope, headers, body))
        except StudioError as exc:
            from api.app import problem

            status = 409 if isinstance(exc, ConflictError) else 422
            await problem(status, str(exc), instance=scope.get("path"))(scope, receive, send)
            return
        if stored is not None:
            replay = [(k.encode(), v.encode()) for k, v in stored.headers] + [(b"idempotent-replayed", b"true")]
            await send({"type": "http.response.start", "status": stored.status, "headers": replay})
            await send({"type": "http.response.body", "body": stored.body})
            return

        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        answer: dict = {"status": 500, "headers": [], "body": []}

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [(k.decode(), v.decode()) for k, v in message.get("headers", [])
                                     if k.decode().lower() in KEPT_HEADERS]
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, keep)
        except BaseException:
            await run_in_threadpool(tokens.release_key, actor, key)
            raise
        if 200 <= answer["status"] < 300:
            await run_in_threadpool(lambda: tokens.finish_key(actor, key, status=answer["status"],
                                                              headers=answer["headers"], body=b"".join(answer["body"])))
        else:
            await run_in_threadpool(tokens.release_key, actor, key)
