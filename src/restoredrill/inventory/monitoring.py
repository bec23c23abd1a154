"""The inventory's `monitoring` section: the Uptime Kuma that watches the site (issue 15).

Kept apart from model.py (which is near its size limit); `Inventory.monitoring` and the
guests' `monitor_host` / `monitored` keys refer to these models.
"""
from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from restoredrill.inventory.types import Duration, Secret

# Kuma 2.0's own bounds for a check interval (src/util.ts MIN_INTERVAL_SECOND, MAX_INTERVAL_SECOND).
KUMA_MAX_SECONDS = 2073600
ENDPOINT = re.compile(r"^(https?://\S+|[A-Za-z0-9_.:\[\]-]+:\d{1,5})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class AlertWindow(_Strict):
    min: Duration = Field("2m", description="An outage must last at least this long before Kuma alerts "
                          "(the fastest alert its retries allow must not be sooner: a restart is not an outage).")
    max: Duration = Field("10m", description="Kuma must alert within this long of a service going silent "
                          "(its worst-case time to alert must not be later).")

    @model_validator(mode="after")
    def _ordered(self) -> "AlertWindow":
        if self.min > self.max:
            raise ValueError(f"alert_window.min ({self.min}) is longer than alert_window.max ({self.max})")
        if self.max <= timedelta(0):
            raise ValueError("alert_window.max must be longer than 0")
        return self


def loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KumaData(_Strict):
    borg: str = Field(description="borg.repositories entry whose archives hold Kuma's data folder.")
    path: str = Field(description="Kuma's database inside the archive, as `borg list` shows it "
                      "(e.g. srv/uptime-kuma/data/kuma.db); the repository's checks must name it.")


class UptimeKuma(_Strict):
    url: str = Field(description="Base URL of Uptime Kuma, e.g. https://kuma.lan:3001 (no credentials in it).")
    username: str = Field(description="A Kuma user; the drill only reads (monitors, notifications, beats).")
    password: Secret = Field(description="Reference to that user's password.")
    verify_tls: bool = Field(True, description="Set false only to disable TLS checks (loud warning).")
    ca_file: str | None = Field(None, description="CA bundle (PEM) that signed Kuma's certificate, e.g. "
                                "a reverse proxy's own CA; default: the system's.")
    insecure_http: bool = Field(False, description="Allow an http:// URL to a host other than loopback: the "
                                "password then crosses the network in clear (loud warning).")
    alert_window: AlertWindow = Field(default_factory=AlertWindow, description="When Kuma must alert after "
                                      "a service stops answering.")
    drift: Literal["notice", "fail"] = Field("notice", description="Monitors whose target matches nothing in "
                                             "the inventory: listed as a notice, or a failing case.")
    heartbeat: bool = Field(True, description="Check restoredrill's own push monitor (the one "
                            "notifications.heartbeat_url pushes to) exists, is active and got the last run's push.")
    timeout: Duration = Field("30s", description="Time allowed for login and each API read.")
    runs_in: str | None = Field(None, description="The guest Uptime Kuma runs in: the lint requires it to be "
                                "backed up and its restore drill to check that Kuma answers.")
    listen_port: int | None = Field(None, ge=1, le=65535, description="The port Kuma itself listens on in "
                                    "that guest, when url reaches it through a reverse proxy (url "
                                    "https://kuma.example on 443, Kuma on 3001): the port the restore drill's "
                                    "health check must reach. Default: url's port.")
    data: KumaData | None = Field(None, description="Where Kuma's data folder is backed up by Borg (when it "
                                  "is not a guest of its own): the lint requires the repository's checks to "
                                  "name its database.")

    @model_validator(mode="after")
    def _transport(self) -> "UptimeKuma":
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        if parts.username or parts.password or parts.query:
            raise ValueError("url must not hold credentials or a query; use username and password")
        if parts.scheme == "http" and not loopback(self.url) and not self.insecure_http:
            raise ValueError("an http:// URL to a non-loopback host sends the password in clear: use https, "
                             "or set insecure_http: true to accept that")
        return self


    def own_port(self) -> int:
        """The port Kuma listens on in its guest: listen_port, else the url's (or its scheme's) port."""
        parts = urlsplit(self.url)
        return self.listen_port or parts.port or (443 if parts.scheme == "https" else 80)


class Monitoring(_Strict):
    uptime_kuma: UptimeKuma | None = Field(None, description="The Uptime Kuma that monitors the site.")


def check_endpoint(value: str) -> str:
    """A monitored endpoint: an http(s) URL, or host:port."""
    if not ENDPOINT.match(value):
        raise ValueError(f"monitored endpoint {value!r} must be an http(s):// URL or host:port")
    return value
