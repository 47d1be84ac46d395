"""ASGI middleware: a request body over the limit gets 413 before any of it is parsed.

Usage:
    app.add_middleware(BodySizeLimit, limit=65_536)
"""

from __future__ import annotations

from slmops.serve.schemas import error


class BodySizeLimit:
    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_big = error(413, f"request body over {self.limit} bytes", "request_too_large")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:  # chunked uploads carry no length: read up to the limit, then replay to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. a streaming response waiting for the client to disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
