"""Telling people and monitors: heartbeat pings (Uptime Kuma push, healthchecks.io) and
failure mail over SMTP with STARTTLS.

A delivery that fails never changes a drill's verdict or the exit code: it becomes a
notice (stderr, the drill report's ``restoredrill`` suite, the HTML page). URLs with
tokens and passwords are secrets: resolved late, never printed, logged or put in an
exception (see :func:`mask_url`).
"""
from __future__ import annotations

from urllib.parse import urlsplit


def mask_url(url: str) -> str:
    """``https://hc.example:8443/***``: scheme, host and port only; path, query and
    credentials (which hold the token) are never shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<heartbeat URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme or '?'}://{host}{port}/***"


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every secret (and, for URLs, each path segment and query value of
    more than 6 characters, where tokens live) replaced by ``***``."""
    pieces: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        pieces.add(secret)
        if "://" in secret:
            parts = urlsplit(secret)
            pieces.update(p for p in parts.path.split("/") if len(p) > 6)
            pieces.update(v for item in parts.query.split("&") for v in item.split("=", 1)[-1:] if len(v) > 6)
            if parts.username:
                pieces.add(parts.username)
            if parts.password:
                pieces.add(parts.password)
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text
