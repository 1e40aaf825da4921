"""The SSRF vector table: each URL refused at config time (where no DNS is needed) and at
call time, with no socket ever connecting anywhere: traps listen on the loopback ports
the vectors name, and every socket connect of the process is recorded."""

from __future__ import annotations

import pytest

from flowker.errors import SSRFBlockedError
from flowker.security.http import new_session
from flowker.security.ssrf import AddressPolicy, parse_ipv4_literal
from flowker.settings import Settings

# (id, URL template, refused at config time without DNS)
# {p}: a trap port on 127.0.0.1; {p6}: a trap port on [::1].
VECTORS = [
    ("decimal-loopback", "http://2130706433:{p}/", True),
    ("octal-loopback", "http://0177.0.0.1:{p}/", True),
    ("hex-short-loopback", "http://0x7f.1:{p}/", True),
    ("hex-loopback", "http://0x7f000001:{p}/", True),
    ("short-loopback", "http://127.1:{p}/", True),
    ("dotted-loopback", "http://127.0.0.1:{p}/", True),
    ("trailing-dot-loopback", "http://127.0.0.1.:{p}/", True),
    ("ipv6-loopback", "http://[::1]:{p6}/", True),
    ("ipv4-mapped-loopback", "http://[::ffff:127.0.0.1]:{p}/", True),
    ("ipv4-mapped-hex-loopback", "http://[::ffff:7f00:1]:{p}/", True),
    ("ipv4-compatible-loopback", "http://[::127.0.0.1]:{p}/", True),
    ("6to4-loopback", "http://[2002:7f00:1::1]:{p}/", True),
    ("6to4-metadata", "http://[2002:a9fe:a9fe::1]/", True),
    ("nat64-metadata", "http://[64:ff9b::169.254.169.254]/", True),
    ("nat64-hex-metadata", "http://[64:ff9b::a9fe:a9fe]/", True),
    ("mapped-metadata", "http://[::ffff:169.254.169.254]/", True),
    ("nat64-private", "http://[64:ff9b::10.0.0.1]/", True),
    ("6to4-private", "http://[2002:c0a8:101::1]/", True),
    ("aws-metadata", "http://169.254.169.254/latest/meta-data/", True),
    ("octal-metadata", "http://0251.0376.0251.0376/", True),
    ("decimal-metadata", "http://2852039166/", True),
    ("aws-ipv6-metadata", "http://[fd00:ec2::254]/", True),
    ("alibaba-metadata", "http://100.100.100.200/latest/meta-data/", True),
    ("azure-wireserver", "http://168.63.129.16/", True),
    ("gcp-metadata-name", "http://metadata.google.internal/computeMetadata/v1/", True),
    ("gcp-metadata-name-dot", "https://metadata.google.internal./", True),
    ("metadata-short-name", "http://metadata/", True),
    ("aws-instance-data-name", "http://instance-data/latest/", True),
    ("userinfo", "http://user:pw@example.com/", True),
    ("userinfo-host-confusion", "http://127.0.0.1:{p}@example.com/", True),
    ("file-scheme", "file:///etc/passwd", True),
    ("gopher-scheme", "gopher://127.0.0.1:{p}/_INFO", True),
    ("ftp-scheme", "ftp://example.com/", True),
    ("rfc1918-10", "http://10.0.0.1/", True),
    ("rfc1918-172", "http://172.16.5.4/", True),
    ("rfc1918-192", "http://192.168.1.1/", True),
    ("cgnat", "http://100.64.0.1/", True),
    ("link-local", "http://169.254.10.10/", True),
    ("ipv6-link-local", "http://[fe80::1]/", True),
    ("ipv6-unique-local", "http://[fc00::1]/", True),
    ("unspecified", "http://0.0.0.0:{p}/", True),
    ("ipv6-unspecified", "http://[::]:{p6}/", True),
    ("multicast", "http://224.0.0.1/", True),
    ("localhost-name", "http://localhost:{p}/", True),
    ("localhost-subdomain", "http://api.localhost:{p}/", True),
    ("control-character", "http://127.0.0.1:{p}/\t", True),
    # Names: only DNS can tell, so they pass config time and are refused at call time.
    ("name-to-private", "http://private.example.test/", False),
    ("name-to-loopback", "http://loop.example.test:{p}/", False),
    ("name-to-metadata", "http://169.254.169.254.nip.example.test/", False),
    ("name-to-mapped-loopback", "http://mapped.example.test:{p}/", False),
    ("name-public-and-private", "http://mixed.example.test:{p}/", False),
]

FAKE_DNS = {
    "private.example.test": ["10.1.2.3"],
    "loop.example.test": ["127.0.0.1"],
    "169.254.169.254.nip.example.test": ["169.254.169.254"],
    "mapped.example.test": ["::ffff:127.0.0.1"],
    "mixed.example.test": ["93.184.216.34", "127.0.0.1"],
}


@pytest.fixture
def traps(trap):
    port = trap.listen("127.0.0.1")
    port6 = trap.listen("::1")
    return trap, port, port6


@pytest.fixture
def dns(fake_dns):
    for name, answer in FAKE_DNS.items():
        fake_dns.add(name, answer)
    return fake_dns


def test_the_table_is_big_enough():
    assert len(VECTORS) >= 25
    assert sum(1 for _, _, at_config in VECTORS if at_config) >= 25


@pytest.mark.parametrize("name,template,at_config", VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_refused_at_config_time(name, template, at_config, traps, dns, connect_log):
    trap, port, port6 = traps
    url = template.format(p=port, p6=port6)
    policy = AddressPolicy()
    if at_config:
        with pytest.raises(SSRFBlockedError) as caught:
            policy.check_url_shape(url)
        assert caught.value.code == "FLK-0341" and caught.value.http_status == 422
        assert "pw" not in caught.value.message  # never the userinfo
    else:
        policy.check_url_shape(url)  # a plain name: nothing to refuse without DNS
        assert not dns.lookups, "config-time checks must not resolve names"
    assert connect_log.addresses == []
    assert trap.connections() == 0


@pytest.mark.parametrize("name,template,at_config", VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_refused_at_call_time(name, template, at_config, traps, dns, connect_log):
    trap, port, port6 = traps
    url = template.format(p=port, p6=port6)
    policy = AddressPolicy()
    with pytest.raises(SSRFBlockedError):
        policy.check_url(url)
    session = new_session(policy)
    try:
        with pytest.raises(SSRFBlockedError) as caught:
            session.get(url, timeout=2)
        assert "pw@" not in caught.value.message
    finally:
        session.close()
    assert connect_log.addresses == [], "no socket may connect for a refused URL"
    assert trap.connections() == 0


def test_production_refuses_every_vector_and_plain_http(traps, dns, connect_log):
    trap, port, port6 = traps
    settings = Settings.from_mapping({"env": "production", "api_keys": "k" * 32, "secret_key": "x" * 43 + "="})
    policy = AddressPolicy.from_settings(settings)
    assert policy.require_https and not policy.allow_loopback
    for _name, template, _ in VECTORS:
        url = template.format(p=port, p6=port6).replace("http://", "https://")
        with pytest.raises(SSRFBlockedError):
            policy.check_url(url)
    with pytest.raises(SSRFBlockedError, match="must use https"):
        policy.check_url_shape("http://example.com/")
    assert connect_log.addresses == [] and trap.connections() == 0


def test_development_admits_loopback_but_nothing_else(traps, dns):
    trap, port, port6 = traps
    policy = AddressPolicy.from_settings(Settings.from_mapping({}))
    assert policy.allow_loopback and not policy.require_https
    for url in (
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://[::1]:{port6}/",
        f"http://2130706433:{port}/",
        f"http://loop.example.test:{port}/",
    ):
        policy.check_url(url)
    for url in (
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/",
        "http://private.example.test/",
        "file:///etc/passwd",
        "http://u:p@localhost/",
        "http://[2002:7f00:1::1]/",
    ):
        with pytest.raises(SSRFBlockedError):
            policy.check_url(url)


def test_allow_list_admits_named_networks_and_hosts_only(dns):
    settings = Settings.from_mapping(
        {
            "env": "production",
            "api_keys": "k" * 32,
            "secret_key": "x" * 43 + "=",
            "allow_private_networks": "10.0.0.0/8, .corp.example.test, private.example.test",
        }
    )
    policy = AddressPolicy.from_settings(settings)
    dns.add("billing.corp.example.test", ["192.168.7.7"])
    dns.add("imds.corp.example.test", ["169.254.169.254"])
    assert policy.check_url("https://10.20.30.40/").addresses == ("10.20.30.40",)
    assert policy.check_url("https://private.example.test/").addresses == ("10.1.2.3",)
    assert policy.check_url("https://billing.corp.example.test/").addresses == ("192.168.7.7",)
    for url in (
        "https://192.168.1.1/",
        "https://127.0.0.1/",
        "https://loop.example.test/",
        "https://imds.corp.example.test/",
    ):  # a name never admits a metadata address
        with pytest.raises(SSRFBlockedError):
            policy.check_url(url)
    exact = AddressPolicy(allowed_networks=["169.254.169.254/32"])
    exact.check_url("http://169.254.169.254/")
    with pytest.raises(SSRFBlockedError):  # a broad range does not open metadata by accident
        AddressPolicy(allowed_networks=["169.254.0.0/16"]).check_url("http://169.254.169.254/")


def test_public_addresses_pass(dns):
    dns.add("api.example.test", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    target = AddressPolicy(require_https=True).check_url("https://api.example.test:8443/v1")
    assert target.host == "api.example.test" and target.port == 8443
    assert target.addresses == ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert AddressPolicy().check_url_shape("http://8.8.8.8/").addresses == ("8.8.8.8",)
    # DNS64 networks answer public names with NAT64 addresses: the embedded IPv4 decides.
    dns.add("dns64.example.test", ["64:ff9b::5db8:d822"])
    assert AddressPolicy().check_url("http://dns64.example.test/").addresses == ("64:ff9b::5db8:d822",)
    with pytest.raises(SSRFBlockedError):
        AddressPolicy().check_url_shape("http://[::8.8.8.8]/")  # IPv4-compatible: routed nowhere


def test_unresolvable_name_is_a_resolution_error_not_a_block(dns):
    from flowker.security.ssrf import HostResolutionError

    with pytest.raises(HostResolutionError, match="nowhere.example.test"):
        AddressPolicy().check_url("http://nowhere.example.test/")


@pytest.mark.parametrize(
    "spelling,expected",
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0", "0.0.0.0"),
        ("1.2.3.4", "1.2.3.4"),
        ("00000000000000177.1", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
    ],
)
def test_ipv4_spellings_are_read_like_inet_aton(spelling, expected):
    import socket

    assert str(parse_ipv4_literal(spelling)) == expected
    assert socket.inet_ntoa(socket.inet_aton(spelling)) == expected  # the resolver agrees


@pytest.mark.parametrize("text", ["example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "0x", "1..2", ""])
def test_non_addresses_are_not_read_as_ipv4(text):
    assert parse_ipv4_literal(text) is None
