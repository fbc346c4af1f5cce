"""The API's documentation pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``), served whole by the
gateway.

FastAPI's own pages load their scripts and styles from a public CDN, and a government network
without internet access then shows a blank page. The files come instead from the ``fastapi-offline``
package (a maintained copy of swagger-ui-dist and ReDoc's standalone bundle) and are served under
``/docs/assets``; the pages name no other host (no web fonts, no online validator badge).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS", "install"]

ASSETS = "/docs/assets"
_FILES = Path(fastapi_offline.__file__).resolve().parent / "static"


def install(api: FastAPI, *, docs: str = "/docs", redoc: str = "/redoc") -> None:
    """Add the two pages and their assets to ``api``, which must be built with ``docs_url=None``
    and ``redoc_url=None`` (else FastAPI's CDN pages would answer first)."""
    api.mount(ASSETS, StaticFiles(directory=_FILES), name="docs-assets")

    @api.get(docs, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{api.openapi_url}", title=f"{api.title} – Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from swagger.io

    @api.get(redoc, include_in_schema=False)
    async def redoc_page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{api.openapi_url}", title=f"{api.title} – ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)
