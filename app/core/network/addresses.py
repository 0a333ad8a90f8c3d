"""Which network addresses count as public: the one rule for every request a third party can steer.

Why it lives in core: two kinds of URL reach this service from outside, callback URLs (webhooks) and
the redirects Autoenhance sends for image downloads, and both must stop at the same line: no
loopback, link-local, private, reserved or cloud metadata addresses, checked on the addresses a
name resolves to (the ones then dialled), IPv4 embedded in IPv6 decoded first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
"""Named for the error message and the tests; each is also non-global, so refused by the main rule."""

_LAST_32_BITS = (
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated): ::a.b.c.d
    ipaddress.ip_network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT): ::ffff:0:a.b.c.d
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64, well-known prefix
)
"""IPv6 forms whose last 32 bits are an IPv4 address the packets end up at (IPv4-mapped has its own
attribute). Python calls several of them global; what matters is the IPv4 address inside."""
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
"""Local-use NAT64 (RFC 8215): translated into a network-specific IPv4 space, local by definition."""
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)
"""ISATAP interface identifiers: the last 32 bits are then the tunnel endpoint's IPv4 address."""


def refusal(address: IPAddress) -> str | None:
    """Why `address` may not be dialled, or None when it is a public unicast address.

    An IPv6 address that carries an IPv4 address (mapped, compatible, translated, NAT64, 6to4,
    Teredo, ISATAP) is judged by the IPv4 address too: that is where the packets go.
    """
    if isinstance(address, ipaddress.IPv6Address) and address in _LOCAL_NAT64:
        return "a local-use NAT64 address"
    carried = _embedded_ipv4(address)
    for embedded in carried:
        reason = refusal(embedded)
        if reason is not None:
            return f"an IPv6 form of {embedded}, {reason}"
    if carried and isinstance(address, ipaddress.IPv6Address) and _translated(address):
        return None  # a translation of a public IPv4 address: that address is the whole story
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


def _translated(address: ipaddress.IPv6Address) -> bool:
    """Mapped, compatible, translated or NAT64: forms that exist only to carry an IPv4 address."""
    return address.ipv4_mapped is not None or any(address in network for network in _LAST_32_BITS)


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses inside an IPv6 address, in every form that carries one (empty if none)."""
    if not isinstance(address, ipaddress.IPv6Address) or address.is_loopback or address.is_unspecified:
        return []
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if _translated(address):
        return [low]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # (server, client)
    if (int(address) >> 32) & 0xFFFFFFFF in _ISATAP_IDS:
        return [low]
    return []


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def first_refusal(addresses: Iterable[IPAddress]) -> str | None:
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            return f"{address} is {reason}"
    return None
