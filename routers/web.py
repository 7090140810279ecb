"""The web page: pick or drop an X-ray, see the class, the probabilities and the attention overlay.

Self-contained (no CDN, no external font), so it works offline; a strict Content-Security-Policy keeps it so.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "classifier" / "web"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=WEB_DIR)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
