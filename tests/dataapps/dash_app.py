"""A Dash 4 app as a Dash Enterprise app is written: under a path prefix, reading the caller
with dash_enterprise_auth in a callback and in a plain Flask route.

    python dash_app.py PORT PREFIX        (PREFIX like /apps/dash/)

dash_enterprise_auth reads Plotly-User-Data (header mode), or with DASH_JWKS_URL set the
kcIdToken cookie (token mode). With DASH_LOGOUT_URL set the layout has its logout button.
"""

import json
import os
import sys

import dash
import dash_enterprise_auth as auth
import flask
from dash import Input, Output, dcc, html

from seen import record

port, prefix = int(sys.argv[1]), sys.argv[2]
app = dash.Dash(__name__, requests_pathname_prefix=prefix, routes_pathname_prefix=prefix)
server = app.server


@server.before_request
def _record():
    record("dash " + flask.request.path, flask.request.headers)


app.layout = html.Div(
    [dcc.Input(id="q", value=""), html.Div(id="who")]
    # The sign-out link of Dash Enterprise apps: a plain link to DASH_LOGOUT_URL.
    + ([auth.create_logout_button()] if os.environ.get("DASH_LOGOUT_URL") else [])
)


@app.callback(Output("who", "children"), Input("q", "value"))
def who(q):
    return json.dumps({"q": q, "username": auth.get_username(), "user_data": auth.get_user_data()})


@server.route(prefix + "whoami")
def whoami():
    return flask.jsonify(username=auth.get_username(), user_data=auth.get_user_data())


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port, debug=False)
