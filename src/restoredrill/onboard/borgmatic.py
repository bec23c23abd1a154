"""borgmatic configuration files -> Borg repository drafts for the inventory (pure).

Read as borgmatic itself lays them out (``borgmatic/config/schema.yaml`` of the release):
from 1.8 on one flat mapping; before 1.8 the sections ``location``, ``storage``,
``retention``, ``consistency`` and ``hooks``, flattened here the same way borgmatic's own
``borgmatic/config/normalize.py`` does. Repositories are ``{path, label}`` entries (1.7.10+)
or plain strings; a ``user@host:path`` location is Borg 1's scp form (``ssh://user@host/./path``
for a relative path, as borg's ``Location`` parses it).

Secrets are never copied: ``encryption_passcommand`` becomes a ``command:`` reference
(borgmatic runs it split like a shell, without one: ``borgmatic/borg/passcommand.py``);
``encryption_passphrase`` of the form ``${VAR}`` becomes ``env:VAR`` and
``{credential file PATH}`` ``file:PATH`` (borgmatic/hooks/credential/); an inline passphrase
is replaced by a placeholder reference and a note. Push URLs of the ``uptime_kuma`` and
``healthchecks`` hooks hold a token: only their scheme and host are named.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_PATHS = ("/etc/borgmatic/config.yaml",)
DEFAULT_DIR = "/etc/borgmatic.d"
SECTIONS = ("location", "storage", "retention", "consistency", "hooks", "output")
KEEPS = ("keep_within", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
UNSUPPORTED_KEEPS = ("keep_secondly", "keep_minutely", "keep_13weekly", "keep_3monthly")
SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~]")
NAME_CHARS = re.compile(r"[^a-z0-9_.-]+")


class BorgmaticError(ValueError):
    """A configuration file that cannot be read; the message names the file and the fix."""


@dataclass
class RepoDraft:
    """One repository as the inventory wants it, and what only a person can decide."""

    entry: dict[str, Any]
    retention: dict[str, Any] | None
    source: Path
    comments: dict[str, str] = field(default_factory=dict)     # key of entry -> comment
    ssh: dict[str, Any] | None = None                            # host, port, user, key_file, known_hosts_file
    notes: list[str] = field(default_factory=list)               # facts for the person (hooks, ...)


class _Loader(yaml.SafeLoader):
    """safe_load plus borgmatic's ``!include`` / ``!retain`` / ``!omit`` tags, kept as markers;
    a ``<<: !include FILE`` merge is dropped (not followed: init reads only the files given)."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        node.value = [(key, value) for key, value in node.value
                      if not (key.tag == "tag:yaml.org,2002:merge" and value.tag.startswith("!"))]
        super().flatten_mapping(node)


def _tagged(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, str]:
    value = loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else ""
    return {"__borgmatic_tag__": suffix, "value": str(value)}


_Loader.add_multi_constructor("!", _tagged)


def config_paths(given: list[Path] | None) -> list[Path]:
    """The files to read: the ones given, else borgmatic's defaults that exist."""
    if given:
        return list(given)
    found = [Path(p) for p in DEFAULT_PATHS if Path(p).is_file()]
    folder = Path(DEFAULT_DIR)
    if folder.is_dir():
        found += sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return found


def read_config(path: Path) -> dict[str, Any]:
    """One file, flattened to borgmatic's 1.8+ layout."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BorgmaticError(f"{path}: cannot read this borgmatic configuration ({exc.__class__.__name__}: "
                             f"{exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}); pass another file "
                             f"with --borgmatic or fix its permissions") from None
    try:
        data = yaml.load(text, Loader=_Loader) or {}     # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise BorgmaticError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}); "
                             f"`borgmatic config validate -c {path}` shows the same, fix it there") from None
    if not isinstance(data, dict):
        raise BorgmaticError(f"{path}: a borgmatic configuration is a mapping of options, this file holds "
                             f"{type(data).__name__}; pass the right file with --borgmatic")
    flat = {k: v for k, v in data.items() if k not in SECTIONS}
    for section in SECTIONS:          # borgmatic/config/normalize.py: sections before 1.8
        if isinstance(data.get(section), dict):
            flat.update({k: v for k, v in data[section].items() if k not in flat})
    return flat


def repository_drafts(path: Path) -> list[RepoDraft]:
    config = read_config(path)
    repos = config.get("repositories") or []
    if not isinstance(repos, list) or not repos:
        raise BorgmaticError(f"{path}: names no repositories (borgmatic's `repositories:` list); pass the "
                             f"configuration that holds them with --borgmatic")
    drafts = []
    included = "!include" in path.read_text(encoding="utf-8", errors="replace")
    for item in repos:
        location = item.get("path") if isinstance(item, dict) else item
        label = item.get("label") if isinstance(item, dict) else None
        if not isinstance(location, str) or not location.strip():
            raise BorgmaticError(f"{path}: a repository entry has no path; borgmatic needs `- path: ...`")
        drafts.append(_draft(path, config, location.strip(), label))
        if included:
            drafts[-1].notes.append(f"{path}: its !include files are not followed: pass them with --borgmatic "
                                    f"too or declare what they set by hand")
    return drafts


def _draft(path: Path, config: dict[str, Any], location: str, label: str | None) -> RepoDraft:
    location, ssh = _location(location, config)
    name = _name(label or location)
    entry: dict[str, Any] = {"name": name, "location": location}
    draft = RepoDraft(entry, _retention(config), path, ssh=ssh)
    _passphrase(config, draft)
    if draft.retention:          # the policy's name is given by draft._borg
        glob = _glob(config)
        if glob:
            entry["retention_glob"] = glob
    else:
        draft.comments["retention"] = ("TODO(init): borgmatic sets no keep_* for this repository: add a "
                                       "policy under policies.retention and name it here")
    entry["rpo"] = "daily"
    draft.comments["rpo"] = ("TODO(init): borgmatic has no schedule; how old may the newest archive be? "
                             "(policies.rpo.daily is 25 h + 1 h)")
    if ssh:                      # the storage box's name is given by draft._borg
        if ssh.get("key_file"):
            entry["ssh_key_file"] = ssh["key_file"]
    if isinstance(config.get("remote_path"), str):
        entry["remote_path"] = config["remote_path"]
    if isinstance(config.get("lock_wait"), int) and not isinstance(config["lock_wait"], bool):
        entry["lock_wait"] = f"{max(config['lock_wait'], 1)}s"
    entry["checks"] = _checks(config, draft)
    _hooks(config, draft)
    return draft


def _name(text: str) -> str:
    base = text.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    base = re.sub(r"\.borg$", "", base.lower())
    base = NAME_CHARS.sub("-", base).strip("-._") or "repository"
    return base[:63] if base[0].isalnum() else f"r{base}"[:63]


def _location(location: str, config: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    scp = re.fullmatch(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[0-9a-fA-F:]+\]):(?P<path>.+)", location)
    if scp and "://" not in location:      # borg 1 scp form: user@host:path (relative to the home)
        path = scp["path"]
        location = f"ssh://{scp['user'] + '@' if scp['user'] else ''}{scp['host']}" + (
            path if path.startswith("/") else f"/./{path}")
    parts = urlsplit(location)
    if parts.scheme != "ssh":
        return location, None
    options = _ssh_options(config.get("ssh_command"))
    host = parts.hostname or ""
    ssh = {"name": _name(host.split(".")[0] + "-box") if host else "storage-box", "host": host,
           "port": parts.port or options.get("port") or 22, "user": parts.username or options.get("user") or "root",
           "key_file": options.get("key_file"), "known_hosts_file": options.get("known_hosts_file")}
    return location, ssh


def _ssh_options(command: object) -> dict[str, Any]:
    """``ssh_command: ssh -i KEY -p PORT -o UserKnownHostsFile=F``: what the storage box needs."""
    if not isinstance(command, str):
        return {}
    try:
        words = shlex.split(command)
    except ValueError:
        return {}
    found: dict[str, Any] = {}
    for flag, value in zip(words, words[1:] + [""]):
        if flag == "-i":
            found["key_file"] = value
        elif flag == "-p" and value.isdigit():
            found["port"] = int(value)
        elif flag == "-l":
            found["user"] = value
        elif flag == "-o" and "=" in value:
            key, _, text = value.partition("=")
            if key.lower() == "userknownhostsfile":
                found["known_hosts_file"] = text.split()[0] if text.split() else None
            elif key.lower() == "identityfile":
                found["key_file"] = text
            elif key.lower() == "port" and text.isdigit():
                found["port"] = int(text)
    return found


def _retention(config: dict[str, Any]) -> dict[str, Any] | None:
    policy = {}
    for key in KEEPS:
        value = config.get(key)
        if key == "keep_within" and isinstance(value, str) and re.fullmatch(r"\d+[Hdwmy]", value):
            policy[key] = value
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            policy[key] = value
    return policy or None


def _glob(config: dict[str, Any]) -> str | None:
    """``match_archives: sh:PATTERN`` (1.8+) or ``prefix`` (before): the archives prune looks at."""
    match = config.get("match_archives")
    if isinstance(match, str) and match.startswith("sh:") and "{" not in match:
        return match[3:]
    prefix = config.get("prefix")
    if isinstance(prefix, str) and prefix and "{" not in prefix:
        return f"{prefix}*"
    return None


def _passphrase(config: dict[str, Any], draft: RepoDraft) -> None:
    name = draft.entry["name"]
    placeholder = f"env:RESTOREDRILL_BORG_PASSPHRASE_{re.sub(r'[^A-Z0-9]', '_', name.upper())}"
    command, phrase = config.get("encryption_passcommand"), config.get("encryption_passphrase")
    if isinstance(phrase, str) and phrase:
        env = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", phrase.strip())
        credential = re.fullmatch(r"\{credential\s+file\s+(\S+)\s*\}", phrase.strip())
        if env:
            draft.entry["passphrase"] = f"env:{env[1]}"
        elif credential:
            draft.entry["passphrase"] = f"file:{credential[1]}"
        else:
            draft.entry["passphrase"] = placeholder
            draft.comments["passphrase"] = (
                f"TODO(init): {draft.source} holds this passphrase inline (not copied): put it in a 0600 file "
                f"and write file:PATH here (or set {placeholder[4:]} for the runs)")
    elif isinstance(command, str) and command.strip():
        if SHELL_SYNTAX.search(command):
            draft.entry["passphrase"] = placeholder
            draft.comments["passphrase"] = (
                "TODO(init): borgmatic's encryption_passcommand uses shell syntax; restoredrill runs "
                "command: references without a shell: wrap it in a script and write command:SCRIPT here")
        else:
            draft.entry["passphrase"] = f"command:{command.strip()}"
    else:
        draft.entry["encryption_required"] = False
        draft.comments["encryption_required"] = (
            "TODO(init): borgmatic names no passphrase: if the repository is encrypted (borg info says so), "
            "add passphrase: file:PATH and remove this line")


def _checks(config: dict[str, Any], draft: RepoDraft) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    sources = [s for s in config.get("source_directories") or [] if isinstance(s, str)]
    plain = [s for s in sources if s.startswith("/") and not re.search(r"[*?\[{~]", s) and s != "/"]
    if plain:
        checks["spot_check"] = {"source": plain[0]}
        others = ", ".join(plain[1:]) or "none"
        draft.comments["checks"] = (f"TODO(init): the spot check compares {plain[0]} with the archive (other "
                                    f"sources: {others}); add paths, min_files, sqlite and a canary")
    else:
        draft.comments["checks"] = ("TODO(init): no plain source directory to spot-check; add paths, "
                                    "min_files, sqlite and a canary")
    dumps = []
    for database in config.get("postgresql_databases") or []:
        if not isinstance(database, dict) or not isinstance(database.get("name"), str):
            continue
        host = database.get("container") or database.get("hostname") or "localhost"
        port = database.get("port")
        ident = database.get("label") or (f"{host}:{port}" if port else str(host))
        entry = {"path": f"borgmatic/postgresql_databases/{ident}/{database['name']}"}
        if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database["name"]):
            entry["database"] = database["name"]
        dumps.append(entry)
    if dumps:
        checks["postgres_dumps"] = dumps
        draft.notes.append(f"{draft.source}: PostgreSQL dump paths follow borgmatic 1.9+ "
                           f"(borgmatic/postgresql_databases/HOST/NAME); before 1.9 they were under "
                           f"root/.borgmatic/: check with `borg list REPO::ARCHIVE borgmatic`")
    return checks


def _hooks(config: dict[str, Any], draft: RepoDraft) -> None:
    for hook, key in (("uptime_kuma", "push_url"), ("healthchecks", "ping_url")):
        value = config.get(hook)
        url = value.get(key) if isinstance(value, dict) else None
        if isinstance(url, str) and url:
            parts = urlsplit(url if "://" in url else f"https://hc-ping.com/{url}")
            try:
                host = f"{parts.hostname}{':' + str(parts.port) if parts.port else ''}"    # never user:password@
            except ValueError:
                host = str(parts.hostname)
            draft.notes.append(f"{draft.source}: borgmatic reports to {hook} at {parts.scheme}://{host} "
                               f"(its token was not copied); restoredrill's own heartbeat is "
                               f"notifications.heartbeat_url, the monitoring drill monitoring.uptime_kuma")
