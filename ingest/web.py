"""Serves the dashboard (plain files from web/) at /, under a strict Content-Security-Policy."""

from pathlib import Path

from flask import Blueprint, send_from_directory
from werkzeug.routing import PathConverter

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

# Only what the page really needs: its own scripts, styles, images and the Socket.IO
# connection back to this origin (ws: and wss: for the WebSocket transport).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class AssetPath(PathConverter):
    """Any path outside /api/, so unknown API routes stay 404 (not 405) for every method."""

    regex = r"(?!api/)[^/].*?"


bp = Blueprint("web", __name__)
# Runs before the routes below are added, so the converter exists when they are.
bp.record_once(lambda state: state.app.url_map.converters.setdefault("asset", AssetPath))


def _send(path: str):
    response = send_from_directory(WEB_ROOT, path, max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.get("/")
def index():
    return _send("index.html")


@bp.get("/<asset:path>")
def asset(path: str):
    return _send(path)
