"""``python -m restoredrill.clients.arp_probe DEV SRC_MAC SRC_IP TARGET SECONDS``, run inside the
runner's network namespace (``ip netns exec``): which MACs answer ARP for TARGET on DEV.

The kernel's neighbour table keeps one answer and ignores a second one that comes within
``locktime`` (net/ipv4/arp.c ``arp_process``: ``override = time_after(jiffies, n->updated +
NEIGH_VAR(n->parms, LOCKTIME))``), so two machines holding one address would go unseen
there. A packet socket sees every reply. One empty UDP datagram to the discard port (9)
also makes the kernel resolve TARGET itself, so that ``ip neigh`` shows whom it will send
to. Prints ``{"macs": [...]}``.
"""
from __future__ import annotations

import json
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
ARP = struct.Struct("!HHBBH6s4s6s4s")      # RFC 826 for Ethernet/IPv4


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def request(src_mac: str, src_ip: str, target: str) -> bytes:
    """A broadcast ARP who-has TARGET tell SRC_IP."""
    sha = mac_bytes(src_mac)
    ether = b"\xff" * 6 + sha + struct.pack("!H", ETH_P_ARP)
    return ether + ARP.pack(1, 0x0800, 6, 4, 1, sha, socket.inet_aton(src_ip), b"\0" * 6,
                            socket.inet_aton(target))


def replier(frame: bytes, target: str) -> str | None:
    """The sender MAC of an ARP reply for TARGET, else None."""
    if len(frame) < 14 + ARP.size or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, _tpa = ARP.unpack(frame[14:14 + ARP.size])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2) or spa != socket.inet_aton(target):
        return None
    return ":".join(f"{b:02x}" for b in sha)


def probe(device: str, src_mac: str, src_ip: str, target: str, seconds: float) -> list[str]:
    macs: set[str] = set()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as raw, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        raw.bind((device, ETH_P_ARP))
        frame = request(src_mac, src_ip, target)
        deadline = time.monotonic() + seconds
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                raw.send(frame)
                try:
                    udp.sendto(b"", (target, 9))
                except OSError:
                    pass                   # no route: the caller sees no answer
                next_send = now + seconds / 3
            raw.settimeout(max(0.01, min(deadline, next_send) - now))
            try:
                data = raw.recv(2048)
            except TimeoutError:
                continue
            mac = replier(data, target)
            if mac:
                macs.add(mac)
    return sorted(macs)


def main(argv: list[str]) -> int:
    device, src_mac, src_ip, target, seconds = argv
    print(json.dumps({"macs": probe(device, src_mac, src_ip.split("/")[0], target, float(seconds))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
