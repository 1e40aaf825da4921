"""Shared by the security tests (imported by name: each test folder is on sys.path)."""

from __future__ import annotations

from flowker.security.ssrf import AddressPolicy

# 127.0.0.1 plays "the public internet" (allow-listed); every other loopback address is refused.
PUBLIC = AddressPolicy(allowed_networks=["127.0.0.1/32"])
