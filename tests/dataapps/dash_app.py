"""A Dash 4 app as a Dash Enterprise app is written: under a path prefix, reading the caller
with dash_enterprise_auth in a callback and in a plain Flask route, with a background
callback (DiskcacheManager: the job runs in another process; the renderer polls for it).

    python dash_app.py PORT PREFIX        (PREFIX like /apps/dash/)

dash_enterprise_auth reads Plotly-User-Data (header mode), or with DASH_JWKS_URL set the
kcIdToken cookie (token mode). With DASH_LOGOUT_URL set the layout has its logout button.
"""

import json
import os
import sys
import tempfile
import time

import dash
import dash_enterprise_auth as auth
import diskcache
import flask
from dash import DiskcacheManager, Input, Output, dcc, html

from seen import record

port, prefix = int(sys.argv[1]), sys.argv[2]
manager = DiskcacheManager(diskcache.Cache(tempfile.mkdtemp(prefix="dash-jobs-")))
app = dash.Dash(
    __name__,
    requests_pathname_prefix=prefix,
    routes_pathname_prefix=prefix,
    background_callback_manager=manager,
)
server = app.server


@server.before_request
def _record():
    record("dash " + flask.request.path, flask.request.headers)


app.layout = html.Div(
    [dcc.Input(id="q", value=""), html.Div(id="who"), html.Button("Run", id="run"), html.Div(id="slow")]
    # The sign-out link of Dash Enterprise apps: a plain link to DASH_LOGOUT_URL.
    + ([auth.create_logout_button()] if os.environ.get("DASH_LOGOUT_URL") else [])
)


@app.callback(Output("who", "children"), Input("q", "value"))
def who(q):
    return json.dumps({"q": q, "username": auth.get_username(), "user_data": auth.get_user_data()})


@app.callback(Output("slow", "children"), Input("run", "n_clicks"), background=True, prevent_initial_call=True)
def slow(n_clicks):
    # Long enough that the renderer has to poll for the result at least once.
    time.sleep(1.5)
    return f"done after click {n_clicks}"


@server.route(prefix + "whoami")
def whoami():
    return flask.jsonify(username=auth.get_username(), user_data=auth.get_user_data())


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port, debug=False)
