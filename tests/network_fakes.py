"""Network fakes the security and hardening tests share (imported by name: ``tests/`` is
on sys.path through its conftest): a recorder of every socket connect and a fake DNS for
names (numeric hosts resolve for real, so nothing here can reach beyond 127.0.0.0/8)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field


@dataclass
class ConnectLog:
    """Every address a socket tried to connect to while the fixture was active."""

    addresses: list = field(default_factory=list)

    def hosts(self) -> list[str]:
        return [a[0] for a in self.addresses if isinstance(a, tuple)]


def install_connect_log(monkeypatch) -> ConnectLog:
    """Record every address a socket connects to (``connect`` and ``connect_ex``) until the test ends."""
    log = ConnectLog()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock, address):
        log.addresses.append(address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        log.addresses.append(address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return log


class FakeDNS:
    """Maps test names to answers; a list of answers is served one per lookup (rebinding)."""

    def __init__(self, real):
        self.real = real
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def add(self, name: str, *answers: list[str]) -> None:
        self.answers[name.lower()] = [list(a) for a in answers]

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.strip("[]").split("%")[0])
            return self.real(host, port, family, type, proto, flags)  # numeric: no lookup needed
        except ValueError:
            pass
        if name.lower() == "localhost":
            return self.real(host, port, family, type, proto, flags)  # /etc/hosts, never the network
        self.lookups.append(name)
        queue = self.answers.get(name.lower().rstrip("."))
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        result = []
        for address in addresses:
            family_ = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family_ == socket.AF_INET6 else (address, int(port or 0))
            result.append((family_, socket.SOCK_STREAM, 6, "", sockaddr))
        return result


def install_fake_dns(monkeypatch) -> FakeDNS:
    """``socket.getaddrinfo`` answered by a :class:`FakeDNS` until the test ends."""
    dns = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns
