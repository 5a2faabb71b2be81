"""Where a webhook may point: http(s) to a public address, unless the operator allows more.

Checked at registration (a 422) and again before every delivery attempt, because
DNS can change after registration. Every address the name resolves to must be
public (``ipaddress``'s ``is_global``): that excludes loopback, private ranges,
link-local (169.254.0.0/16, the cloud metadata address among them), carrier-grade
NAT (100.64.0.0/10, Alibaba's metadata), unique-local IPv6 (fd00:ec2::254,
AWS's IPv6 metadata), multicast and reserved ranges, and IPv4-mapped forms of them.
``TRAINFORGE_WEBHOOK_ALLOW_PRIVATE=1`` lifts the address rule (tests, private
networks). The scheme rule always holds.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class RefusedUrl(Exception):
    """Why the URL may not be called (a sentence for the user)."""


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedUrl(f"the host {host!r} does not resolve ({exc})") from None
    return sorted({str(info[4][0]) for info in infos})


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise ``RefusedUrl`` unless ``url`` may receive webhooks."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedUrl(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("only http:// and https:// URLs can receive webhooks")
    host = parts.hostname
    if not host:
        raise RefusedUrl("the URL has no host")
    if parts.username or parts.password:
        raise RefusedUrl("credentials in the URL are not allowed; sign-check the payload instead")
    if allow_private:
        return
    for address in _addresses(host, port):
        if not _public(address):
            raise RefusedUrl(
                f"{host!r} resolves to {address}, a loopback, private, link-local or "
                "metadata address; webhooks go to public addresses only "
                "(operators: TRAINFORGE_WEBHOOK_ALLOW_PRIVATE=1)"
            )
