"""The one way the `alertd` commands reach the daemon with a token: only ever to the URL given.

Standard library only (`alertd notify` imports it, once per Nagios notification).
"""

from __future__ import annotations

import urllib.request


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the HTTPError it is: followed, it would carry the bearer
    token to wherever the Location points (urllib keeps Authorization across hosts)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def token_opener() -> urllib.request.OpenerDirector:
    """An opener with no proxy from the environment (an `http_proxy` meant for plugins must
    not see the token) and no redirects."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)
