"""The options of ``restoredrill init`` and ``setup``, apart from the commands: the parser
of every subcommand is built on each start, and the commands import the API client (requests,
urllib3) that a ``run`` of Borg drills never needs (issue 26)."""
from __future__ import annotations

from pathlib import Path


def add_init_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the draft inventory to write (never overwritten)")
    for api, port in (("pve", 8006), ("pbs", 8007)):
        parser.add_argument(f"--{api}-url", metavar="URL", help=f"https://HOST:{port} of the {api.upper()} API")
        parser.add_argument(f"--{api}-token-id", metavar="ID", help="read-only API token USER@REALM!NAME")
        parser.add_argument(f"--{api}-token-secret-file", metavar="F", help="file holding only the token's secret")
        parser.add_argument(f"--{api}-fingerprint", metavar="FP", help="SHA-256 fingerprint of its TLS certificate")
    parser.add_argument("--borgmatic", action="append", type=Path, metavar="FILE",
                        help="borgmatic configuration (repeatable; default /etc/borgmatic/config.yaml and "
                             "/etc/borgmatic.d/*.yaml)")


def add_setup_arguments(parser) -> None:
    parser.add_argument("--inventory", type=Path, required=True, help="inventory YAML")
    parser.add_argument("--apply", action="store_true",
                        help="send the steps through the API with the admin tokens (never stored)")
    for api in ("pve", "pbs"):
        parser.add_argument(f"--{api}-admin-token-id", metavar="ID",
                            help=f"{api.upper()} token that may create users, roles and ACLs (e.g. root@pam!setup)")
        parser.add_argument(f"--{api}-admin-token-secret-file", metavar="F", help="file holding only its secret")
