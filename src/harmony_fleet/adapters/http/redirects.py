"""Following redirects one hop at a time, each hop checked before it is asked.

httpx follows redirects by itself, but it would ask an ``http://`` hop of an ``https://``
download before anyone could look: the request (and the token in its query) would already be
on the wire in clear. So the downloader asks with ``follow_redirects=False`` and walks the
chain here, checking every hop with :func:`.urls.check_redirect` (never ``https`` to ``http``;
the hop's URL must pass :func:`.urls.check_artifact_url`). httpx still builds each next request
(``response.next_request``): its rules for methods and for dropping ``Authorization`` on
another origin stay in force.
"""

from __future__ import annotations

import logging

import httpx

from harmony_fleet.adapters.http.urls import ArtifactAccess, check_redirect, redact_url

__all__ = ["send_following_redirects"]

log = logging.getLogger(__name__)


async def send_following_redirects(
    client: httpx.AsyncClient, request: httpx.Request, access: ArtifactAccess
) -> httpx.Response:
    """Send ``request`` and follow its redirects (up to ``client.max_redirects``).

    Returns the first answer that is no redirect, open (streamed): the caller closes it.
    Raises :class:`~harmony_fleet.errors.DownloadRejected` for a hop that is refused, and
    ``httpx.TooManyRedirects`` past the limit (wrapped by the caller like any httpx error).
    """
    hops = 0
    while True:
        response = await client.send(request, stream=True, follow_redirects=False)
        following = response.next_request
        if following is None:
            return response
        await response.aclose()
        hops += 1
        if hops > client.max_redirects:
            raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)
        check_redirect(str(request.url), str(following.url), access)
        log.debug(
            "redirected",
            extra={"url": redact_url(str(request.url)), "to": redact_url(str(following.url))},
        )
        request = following
