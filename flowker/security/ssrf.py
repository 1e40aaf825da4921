"""The SSRF guard: which URLs Flowker may call on its users' behalf.

Executor base URLs, OIDC issuer and token URLs and the executor ``test`` endpoint go
through :class:`AddressPolicy` twice: :meth:`~AddressPolicy.check_url_shape` when a
config is validated (syntax and literal addresses, no DNS) and
:meth:`~AddressPolicy.check_url` right before each call (every resolved address
checked). :mod:`flowker.security.http` then connects only to the addresses that
``check_url`` returned, so a DNS answer that changes between check and connect (DNS
rebinding) cannot reach a refused address.

Refused unless allow-listed: non-http(s) schemes, URLs with user information, and any
address that is not globally routable - loopback, RFC 1918, link-local, CGNAT,
unique-local, multicast, reserved, unspecified - also when wrapped in IPv4-mapped,
IPv4-compatible, 6to4 or NAT64 IPv6 forms or spelled as decimal/octal/hex/short IPv4;
and cloud metadata addresses and names. Error messages name the host, never userinfo.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from flowker.errors import HostResolutionError, SSRFBlockedError  # noqa: F401 (HostResolutionError re-exported)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

# Cloud instance metadata services: AWS (IPv4/IPv6, ECS task metadata, DNS), GCP (IPv6),
# Alibaba, Azure wire server. Azure's 168.63.129.16 is a public address, hence the list.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "169.254.169.123",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "fd20:ce::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
LOOPBACK_HOSTNAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

_NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_HOST_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_\-]{0,61}[a-z0-9_])?$")
_NUMERIC_PART_RE = re.compile(r"^(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)$")


@dataclass(frozen=True)
class ResolvedTarget:
    """A URL that passed the policy, with the addresses a connection may use."""

    url: str
    scheme: str
    host: str  # lower-case, IDNA-encoded, without brackets or trailing dot
    port: int
    addresses: tuple[str, ...]  # every address the name resolved to, all checked, in order

    @property
    def address(self) -> str:
        return self.addresses[0]


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host spells the way ``inet_aton`` reads it, else None.

    Covers every spelling a resolver accepts: ``127.0.0.1``, ``2130706433``,
    ``0177.0.0.1``, ``0x7f.1``, ``127.1``.
    """
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # "127.0.0.1." resolves like "127.0.0.1"
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART_RE.match(p) for p in parts):
        return None
    try:
        numbers = [
            int(p, 16) if p.startswith("0x") else int(p, 8) if len(p) > 1 and p.startswith("0") else int(p)
            for p in parts
        ]
    except ValueError:
        return None
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = 0
    for n in leading:
        value = value << 8 | n
    value = value << 8 * (4 - len(leading)) | last
    return ipaddress.IPv4Address(value)


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IP address written in the host part of a URL, in any spelling, else None."""
    candidate = host.strip("[]")
    if ":" in candidate:
        try:
            return ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
    return parse_ipv4_literal(candidate.lower())


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64_NETWORKS) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


class AddressPolicy:
    """Decides which URLs and addresses outbound calls may reach.

    ``allowed_networks``/``allowed_hosts`` admit internal services deliberately (from
    ``FLOWKER_ALLOW_PRIVATE_NETWORKS``). A host-name entry admits that name whatever it
    resolves to, except cloud metadata addresses, which only an allow-listed network of
    exactly that one address admits. ``.example.internal`` admits every subdomain.
    ``allow_loopback`` (development mode) admits loopback addresses and ``localhost``.
    ``require_https`` (production) refuses ``http://``.
    """

    def __init__(
        self,
        *,
        allowed_networks: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        allowed_hosts: Iterable[str] = (),
        allow_loopback: bool = False,
        require_https: bool = False,
        resolver: Callable | None = None,
    ):
        self.allowed_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        self.allowed_hosts = tuple(_normalize_host(h) for h in allowed_hosts)
        self.allow_loopback = allow_loopback
        self.require_https = require_https
        # None: socket.getaddrinfo looked up at call time (tests may patch it).
        self._resolver = resolver

    @classmethod
    def from_settings(cls, settings) -> "AddressPolicy":
        networks, hosts = split_allow_list(settings.allow_private_networks)
        development = getattr(settings, "env", "development") == "development"
        return cls(
            allowed_networks=networks, allowed_hosts=hosts, allow_loopback=development, require_https=not development
        )

    def replace(self, **changes) -> "AddressPolicy":
        values: dict = dict(
            allowed_networks=self.allowed_networks,
            allowed_hosts=self.allowed_hosts,
            allow_loopback=self.allow_loopback,
            require_https=self.require_https,
            resolver=self._resolver,
        )
        values.update(changes)
        return AddressPolicy(**values)

    def __repr__(self) -> str:
        return (
            f"AddressPolicy(allowed_networks={[str(n) for n in self.allowed_networks]}, "
            f"allowed_hosts={list(self.allowed_hosts)}, allow_loopback={self.allow_loopback}, "
            f"require_https={self.require_https})"
        )

    # -- URLs ------------------------------------------------------------------------

    def check_url_shape(self, url: str) -> ResolvedTarget:
        """Config-time check without DNS: scheme, userinfo, host syntax, literal addresses.

        Returns a target whose ``addresses`` holds the literal address when the host is
        one, else is empty. Names are only checked against metadata/loopback names here;
        what they resolve to is checked by :meth:`check_url` at call time.
        """
        parts, host, port = self._parse(url)
        literal = parse_ip_literal(host)
        if literal is not None:
            self.check_address(literal, host)
            return ResolvedTarget(url, parts.scheme.lower(), str(literal), port, (str(literal),))
        self._check_name(host)
        return ResolvedTarget(url, parts.scheme.lower(), host, port, ())

    def check_url(self, url: str) -> ResolvedTarget:
        """Call-time check: resolve the host and check every address; raise if any is refused."""
        target = self.check_url_shape(url)
        if target.addresses:
            return target
        addresses = self.resolve(target.host, target.port)
        for address in addresses:
            self.check_address(address, target.host)
        return ResolvedTarget(target.url, target.scheme, target.host, target.port, tuple(str(a) for a in addresses))

    def _parse(self, url: str) -> tuple[SplitResult, str, int]:
        if not isinstance(url, str) or not url.strip():
            raise SSRFBlockedError("URL is empty")
        if any(ord(c) < 33 or c in "\\" for c in url):
            raise SSRFBlockedError("URL contains whitespace, control characters or backslashes")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise SSRFBlockedError("URL is malformed (bad host or port)") from None
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            shown = scheme if re.fullmatch(r"[a-z][a-z0-9+.\-]{0,20}", scheme) else "?"
            raise SSRFBlockedError(f"URL scheme '{shown}' is not allowed: only http and https")
        if self.require_https and scheme != "https":
            raise SSRFBlockedError(f"URL for host '{_safe_host(parts)}' must use https in production")
        if "@" in parts.netloc:
            raise SSRFBlockedError(
                f"URL for host '{_safe_host(parts)}' must not contain user information (user:password@)"
            )
        raw_host = parts.hostname
        if not raw_host:
            raise SSRFBlockedError("URL has no host")
        if "%" in raw_host:
            raise SSRFBlockedError(f"URL host '{_safe_host(parts)}' must not carry an IPv6 zone or escapes")
        host = _normalize_host(raw_host)
        if parse_ip_literal(host) is None and not _valid_hostname(host):
            raise SSRFBlockedError(f"URL host '{_shown(host)}' is not a valid host name")
        return parts, host, port if port is not None else DEFAULT_PORTS[scheme]

    def _check_name(self, host: str) -> None:
        if host in METADATA_HOSTNAMES and not self._host_allowed(host, exact_only=True):
            raise SSRFBlockedError(f"host '{host}' is a cloud metadata service and is not allowed")
        if (host in LOOPBACK_HOSTNAMES or host.endswith(".localhost")) and not (
            self.allow_loopback or self._host_allowed(host)
        ):
            raise SSRFBlockedError(f"host '{host}' is a loopback name and is not allowed")

    def _host_allowed(self, host: str, exact_only: bool = False) -> bool:
        for allowed in self.allowed_hosts:
            if host == allowed or (not exact_only and allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False

    # -- addresses -------------------------------------------------------------------

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to, in resolver order, duplicates removed."""
        resolver = self._resolver or socket.getaddrinfo
        try:
            infos = resolver(host, port, 0, socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            raise HostResolutionError(f"host '{host}' could not be resolved") from None
        addresses: list[IPAddress] = []
        for info in infos:
            family, sockaddr = info[0], info[4]
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = str(sockaddr[0]).split("%", 1)[0]
            address = ipaddress.ip_address(text)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise HostResolutionError(f"host '{host}' has no IPv4 or IPv6 address")
        return addresses

    def check_address(self, address: IPAddress | str, host: str) -> None:
        """Raise :class:`SSRFBlockedError` (naming ``host``) unless ``address`` may be reached."""
        reason = self.refusal_reason(address, host)
        if reason:
            raise SSRFBlockedError(f"host '{_shown(host)}' is not allowed: it resolves to {reason}")

    def is_allowed(self, address: IPAddress | str, host: str = "") -> bool:
        return self.refusal_reason(address, host) is None

    def refusal_reason(self, address: IPAddress | str, host: str = "") -> str | None:
        """Why ``address`` is refused (a phrase for the error message), or None if allowed."""
        address = ipaddress.ip_address(address) if isinstance(address, str) else address
        inner = embedded_ipv4(address)
        candidates = [address] + ([inner] if inner is not None else [])
        for candidate in candidates:
            if candidate in METADATA_ADDRESSES:
                if any(candidate in n and n.num_addresses == 1 for n in self.allowed_networks):
                    continue
                return "a cloud metadata address"
        if any(address in n for n in self.allowed_networks) or (
            inner is not None and any(inner in n for n in self.allowed_networks)
        ):
            return None
        if host and self._host_allowed(_normalize_host(host)):
            return None
        if self.allow_loopback and (
            address.is_loopback
            or (
                isinstance(address, ipaddress.IPv6Address)
                and address.ipv4_mapped is not None
                and address.ipv4_mapped.is_loopback
            )
        ):
            return None
        # A translated form (mapped, 6to4, NAT64 - DNS64 networks answer public names with
        # these) goes where its embedded IPv4 address goes, so that address decides.
        # The deprecated IPv4-compatible form (::a.b.c.d) is routed nowhere: refused as itself.
        destination = inner if inner is not None and address not in _IPV4_COMPATIBLE else address
        return None if _is_public(destination) else _describe(destination)


def split_allow_list(entries: Iterable[str]) -> tuple[list, list[str]]:
    """Split allow-list entries into networks (CIDRs, addresses) and host names."""
    networks, hosts = [], []
    for entry in entries:
        entry = str(entry).strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.append(entry)
    return networks, hosts


def _describe(address: IPAddress) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if address.is_private:
        return "a private address"
    return "an address that is not globally routable"


def _normalize_host(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    if parse_ip_literal(host) is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # left as is; _valid_hostname refuses it
    return host


def _valid_hostname(host: str) -> bool:
    if len(host) > 253:
        return False
    labels = host.split(".")
    return all(_HOST_LABEL_RE.match(label) for label in labels)


def _shown(host: str) -> str:
    return host if len(host) <= 100 else host[:100] + "..."


def _safe_host(parts: SplitResult) -> str:
    """The host part of a URL without userinfo, for messages."""
    try:
        return _shown(parts.hostname or "")
    except ValueError:
        return "?"
