"""A tiny app that answers with the identity it was told: the body is JSON with the request's
X-Forwarded-User, X-Forwarded-Groups and X-Gatehouse-Assertion. `wsgi` is for gunicorn
(`gunicorn echo_groups:wsgi`), `asgi` for uvicorn (`uvicorn echo_groups:asgi`). Used by the
header-size suite (tests/e2e/header_budget.rs) and by tests/peers/header-limits.py."""

import json


def _body(get):
    return json.dumps(
        {
            "user": get("x-forwarded-user"),
            "groups": get("x-forwarded-groups"),
            "assertion": get("x-gatehouse-assertion"),
        }
    ).encode()


def wsgi(environ, start_response):
    body = _body(lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = {}
    for k, v in scope["headers"]:
        headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
    body = _body(headers.get)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
