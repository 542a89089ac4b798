"""A Shiny for Python app mounted under a path prefix (Starlette Mount: the prefix becomes the
ASGI root_path); an output says who the session's WebSocket came from and echoes input `n`.

    python shiny_app.py PORT PREFIX       (PREFIX like /apps/shiny/)
"""

import sys

import uvicorn
from shiny import App, reactive, render, ui
from starlette.applications import Starlette
from starlette.routing import Mount

from seen import record

port, prefix = int(sys.argv[1]), sys.argv[2]

app_ui = ui.page_fluid(ui.input_numeric("n", "n", 0), ui.output_text("who"))


def server(input, output, session):
    headers = session.http_conn.headers
    record("shiny session", dict(headers.items()))

    @render.text
    def who():
        return f"n={input.n()} user={headers.get('x-forwarded-user')}"


shiny_app = App(app_ui, server)
mounted = Starlette(routes=[Mount(prefix.rstrip("/"), app=shiny_app)])


async def app(scope, receive, send):
    """Records every HTTP request and WebSocket that reaches the app."""
    if scope["type"] in ("http", "websocket"):
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record(f"shiny {scope['type']} {scope['path']}", headers)
    await mounted(scope, receive, send)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
