"""Proves the runner's path to a scratch guest before and after every contact by address.

``RunnerPath.verify_routes`` reads the runner namespace's addresses, routes (every table,
IPv4 and IPv6) and the leg's link, then the link table of the namespace holding the leg's
other end; ``RunnerPath.verify_mac`` asks who answers ARP for the guest's address there.
The judgement is ``clients.runner_path`` (pure); this module only runs ``ip``.
"""
from __future__ import annotations

import json
import sys
import time

from restoredrill.clients.runner_path import (FIX, Leg, MacMismatch, NoAnswer, RunnerPathError, attachment_problem,
                                              find_leg, mac_problem, neighbour_mac, nsid_name, peer_ref,
                                              route_problems)
from restoredrill.execute import CommandError, run

ARP_SECONDS = 0.6


class RunnerPath:
    """The runner namespace's way to one scratch guest's address on the drill bridge."""

    def __init__(self, netns: str, bridge: str, address: str, guest: str):
        self.netns, self.bridge, self.address, self.guest = netns, bridge, address, guest
        self.leg: Leg | None = None

    # --- ip ------------------------------------------------------------------------------
    def _ip_json(self, *args: str, netns: str | None = "") -> list[dict]:
        """``ip -j [-n NS] ARGS`` parsed; netns "" is the runner's, None the initial namespace."""
        target = self.netns if netns == "" else netns
        argv = ["ip", "-j", *(["-n", target] if target else []), *args]
        try:
            out = run(argv, timeout=30, label="runner path").stdout
        except CommandError as exc:
            raise RunnerPathError(f"guest {self.guest}: cannot read the runner namespace {self.netns}: {exc}; "
                                  f"{FIX}") from None
        return json.loads(out) if out.strip() else []

    # --- routes and the leg ----------------------------------------------------------------
    def verify_routes(self) -> Leg:
        """The leg holding the guest's subnet, attached to the drill bridge, and no route but
        that subnet; else :class:`RunnerPathError` naming what was found and the fix."""
        try:
            leg = find_leg(self._ip_json("addr", "show"), self.address, self.netns)
        except RunnerPathError as exc:
            raise RunnerPathError(f"guest {self.guest}: {exc}") from None
        problems = [f"route {route}" for route in route_problems(self._ip_json("route", "show", "table", "all"), leg)]
        attached = self._attachment(leg)
        if attached:
            problems.append(attached)
        if problems:
            raise RunnerPathError(f"guest {self.guest}: the runner namespace {self.netns} does not reach "
                                  f"{self.address} through the drill bridge {self.bridge} only: "
                                  f"{'; '.join(problems)}. The runner could reach production by this address; "
                                  f"{FIX}. No contact was made with the guest")
        self.leg = leg
        return leg

    def _attachment(self, leg: Leg) -> str | None:
        links = self._ip_json("-d", "link", "show", "dev", leg.device)
        ref = peer_ref(links[0] if links else {})
        if ref.nsid is None:
            where, peer_ns = f"the runner namespace {self.netns}", ""
        else:
            name = nsid_name(self._ip_json("netns", "list-id"), ref.nsid)
            where, peer_ns = (f"namespace {name}", name) if name else ("the initial namespace", None)
        return attachment_problem(self._ip_json("-d", "link", "show", netns=peer_ns), ref, leg, self.bridge, where)

    # --- the answering MAC -----------------------------------------------------------------
    def answering_macs(self, leg: Leg) -> tuple[str | None, list[str]]:
        """(the kernel's neighbour entry, every MAC that answered ARP) after a fresh probe;
        the cached entry is dropped first (a PERMANENT one stays: ``ip neigh flush`` skips it)."""
        run(["ip", "-n", self.netns, "neigh", "flush", "to", self.address, "dev", leg.device], timeout=30,
            check=False, label="runner path")
        try:
            out = run(["ip", "netns", "exec", self.netns, sys.executable, "-m", "restoredrill.clients.arp_probe",
                       leg.device, leg.mac, leg.address, self.address, str(ARP_SECONDS)],
                      timeout=30, label="ARP probe").stdout
        except CommandError as exc:
            raise RunnerPathError(f"guest {self.guest}: the ARP probe in {self.netns} failed: {exc}") from None
        macs = json.loads(out.strip().splitlines()[-1])["macs"]
        kernel = neighbour_mac(self._ip_json("neigh", "show", "to", self.address, "dev", leg.device), self.address)
        return kernel, macs

    def verify_mac(self, expected: list[str]) -> str:
        """One probe: the answering MAC when it is the scratch guest's; :class:`MacMismatch` when
        another MAC answers, :class:`RunnerPathError` for a path that is not proven; :class:`NoAnswer`
        when nothing answers (yet)."""
        if not expected:
            raise MacMismatch(f"guest {self.guest}: the scratch guest's PVE config has no NIC with a MAC on the "
                              f"drill bridge {self.bridge}, so who answers {self.address} cannot be checked")
        leg = self.verify_routes()
        kernel, macs = self.answering_macs(leg)
        problem = mac_problem(self.address, kernel, macs, expected, self.bridge)
        if problem:
            raise MacMismatch(f"guest {self.guest}: {problem}")
        if kernel is None:
            raise NoAnswer(f"guest {self.guest}: nothing answers ARP for {self.address} on the drill bridge "
                                  f"{self.bridge} (from {self.netns} {leg.describe()})")
        return kernel

    def verify_mac_until(self, expected: list[str], deadline: float) -> str:
        """:meth:`verify_mac` until the guest answers (its network may come up after its agent);
        a mismatch or a path that is not proven fails at once."""
        while True:
            try:
                return self.verify_mac(expected)
            except NoAnswer:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)
