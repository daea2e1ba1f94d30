"""The dashboard page's files: one HTML page, its script and its style sheet.

They ship inside the package and are read once, when the app is built; the page
draws its charts itself (inline SVG), so it needs no CDN, no build step and no
network beyond the router.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from fastapi import HTTPException
from fastapi.responses import Response

_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_HEADERS = {
    # Everything the page loads comes from the router itself.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True)
class DashboardAssets:
    html: bytes
    others: dict[str, bytes]

    @classmethod
    def load(cls) -> DashboardAssets:
        here = files(__name__)
        return cls(
            html=here.joinpath("index.html").read_bytes(),
            others={name: here.joinpath(name).read_bytes() for name in _TYPES},
        )

    @property
    def page(self) -> Response:
        return Response(self.html, media_type="text/html; charset=utf-8", headers=_HEADERS)

    def file(self, name: str) -> Response:
        body = self.others.get(name)
        if body is None:
            raise HTTPException(404)  # as for any other unknown path of the router's
        return Response(body, media_type=_TYPES[name], headers=_HEADERS)
