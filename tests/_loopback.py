"""Which sockets the test process and everything it started hold: the loopback-only check of the
Ray and server tests (these machines must never be reached on another address)."""

from __future__ import annotations

import ipaddress
import threading

import psutil


def is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return (mapped or address).is_loopback


class ConnectionWatch:
    """Samples the sockets of this process and all its descendants (Ray's GCS, raylet, workers)."""

    def __init__(self) -> None:
        self.remote: set[tuple[str, str, int]] = set()  # (process, ip, port) of any non-loopback peer
        self.listening: set[tuple[str, str, int]] = set()  # (process, ip, port) listening off loopback
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                conns = proc.net_connections(kind="inet")
                name = proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for c in conns:
                if c.raddr and not is_loopback(c.raddr.ip):
                    self.remote.add((name, c.raddr.ip, c.raddr.port))
                if c.status == psutil.CONN_LISTEN and not is_loopback(c.laddr.ip):
                    self.listening.add((name, c.laddr.ip, c.laddr.port))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
