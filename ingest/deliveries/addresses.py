"""Which receiver addresses webhooks may reach: public ones only, unless allowed.

A tenant names the URL, and the server sends to it from inside the operator's
network: without this check a webhook could reach the cloud metadata service, a
database on loopback or anything else on the private network (SSRF). URLs are checked
when an endpoint is saved, and again at every send against the address actually
connected to, so a name that resolves elsewhere later (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address in their low 32 bits (NAT64).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class AddressRefused(Exception):
    """The URL or the address it resolves to may not be sent to; says why."""


# IPv6 prefixes whose low 32 bits are an IPv4 address: IPv4-compatible (deprecated),
# IPv4-translated, and NAT64's.
_CARRY_IPV4 = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    *_NAT64,
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo:
        found.extend(address.teredo)
    if any(address in network for network in _CARRY_IPV4):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally routable, and so is every IPv4 address inside it.

    is_global is false for loopback, private, link-local (the metadata service at
    169.254.169.254), shared (100.64/10), reserved, unspecified and documentation
    ranges; multicast is checked apart, as some of it counts as global.
    """
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(is_public(inner) for inner in _embedded_ipv4(address))
    return True


# Spaces, control characters (CR/LF would end up in the Host header) and non-ASCII.
_NOT_IN_URLS = re.compile(r"[^\x21-\x7e]")


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL without credentials, or AddressRefused."""
    if _NOT_IN_URLS.search(url):
        raise AddressRefused(
            "The URL must be ASCII without spaces: percent-encode the path and query, "
            "and write an international domain name in punycode (xn--…)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"The URL is malformed: {error}.") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("Only http and https URLs can receive webhooks.")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("The URL must not carry credentials (user:password@).")
    if not parts.hostname:
        raise AddressRefused("The URL has no host.")
    if port == 0:
        raise AddressRefused("Port 0 is not a port to send to.")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names by itself, in any form a resolver would take.

    Besides the usual forms, C's inet_aton (which system resolvers use) reads
    "127.1", "0x7f.1", "017700000001" and "2130706433" as 127.0.0.1; eventlet's
    resolver does not, and would call them names not in DNS.
    """
    bare = host.removesuffix(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself).

    OSError if it does not resolve, UnicodeError for a name that cannot be one.
    """
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # A scope id ("fe80::1%eth0") is not part of the address.
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def refuse_private(host: str, addresses: list[IPAddress]) -> None:
    # The address itself is not named: the answer must not map the internal network.
    if not all(is_public(address) for address in addresses):
        raise AddressRefused(NOT_PUBLIC.format(host=host))


NOT_PUBLIC = (
    "{host} resolves to an address that is not public; webhooks are sent to public "
    "addresses only (WEBHOOK_ALLOW_PRIVATE=1 lifts this for development)."
)
