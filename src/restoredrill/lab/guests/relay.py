"""``python -m restoredrill.lab.guests.relay HOST PORT``: stdin/stdout <-> TCP, run inside
the runner's network namespace as ssh's ProxyCommand (``nc`` is not everywhere)."""
from __future__ import annotations

import os
import socket
import sys
import threading


def main(host: str, port: int) -> int:
    sock = socket.create_connection((host, port), timeout=20)
    sock.settimeout(None)

    def upstream() -> None:
        while True:
            data = os.read(0, 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)
    threading.Thread(target=upstream, daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            return 0
        os.write(1, data)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
