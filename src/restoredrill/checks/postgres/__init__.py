"""Throwaway PostgreSQL servers that prove a dump restores.

``script`` is the pure part (dump format, the psql script lexer that both scans
for unsafe commands and strips owner/privilege statements); ``server`` runs the
private server and loads dumps into it.
"""
from restoredrill.checks.postgres.errors import PostgresError, UnsafeDumpError
from restoredrill.checks.postgres.script import (ALLOWED_META_COMMANDS, check_plain_dump_is_safe,
                                                 copy_without_owner_statements, detect_dump_format,
                                                 find_meta_commands, prepare_plain_dump,
                                                 restore_role)
from restoredrill.checks.postgres.server import (DumpRestore, ThrowawayPostgres, ensure_service_user,
                                                 find_bin_dir)

__all__ = ["ALLOWED_META_COMMANDS", "DumpRestore", "PostgresError", "ThrowawayPostgres",
           "UnsafeDumpError", "check_plain_dump_is_safe", "copy_without_owner_statements",
           "detect_dump_format", "ensure_service_user", "find_bin_dir", "find_meta_commands",
           "prepare_plain_dump", "restore_role"]
