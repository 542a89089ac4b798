"""Jupyter Server identity from Gatehouse's headers: the person is X-Forwarded-User (set by
the gateway, which removes any client's copy); no header, no user. Use with

    jupyter server --ServerApp.identity_provider_class=gatehouse_identity.GatehouseIdentityProvider
"""

from jupyter_server.auth.identity import IdentityProvider, User

from seen import record


class GatehouseIdentityProvider(IdentityProvider):
    # The gateway authenticates; Jupyter's own token and password are not used.
    token = ""

    def get_user(self, handler):
        headers = handler.request.headers
        record("jupyter " + handler.request.path, dict(headers.items()))
        name = headers.get("X-Forwarded-User")
        if not name:
            return None
        return User(username=name, name=name, display_name=name)

    @property
    def auth_enabled(self):
        return True

    @property
    def login_available(self):
        return False
