"""Errors of the throwaway PostgreSQL checks."""
from __future__ import annotations


class PostgresError(RuntimeError):
    """The throwaway server failed, or a dump did not restore."""


class UnsafeDumpError(PostgresError):
    """A plain dump contains psql meta-commands that could run programs or touch files."""
