"""The one rule for every URL the controller calls out to (settings and policies).

Plain http is refused off loopback wherever what travels matters (a token, a webhook's
secret, the numbers an action is decided on); and no scheme may reach a link-local
address, where the cloud's instance metadata service answers (169.254.169.254 and
AWS's fd00:ec2::254) with the host's own credentials. Hosts are judged as written: a
name is not resolved.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

METADATA_SERVICES = frozenset({ipaddress.ip_address("fd00:ec2::254")})
CLEARTEXT_RISK = "(what is sent and answered must not travel in clear)"


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(int(host) if host.isdigit() else host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(url: str) -> bool:
    """``localhost`` or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def url_problem(url: str, *, cleartext: str | None = CLEARTEXT_RISK) -> str | None:
    """Why ``url`` must not be called, or None. ``cleartext`` says why plain http is
    refused off loopback; None allows it (a probe of a health endpoint, the emulator)."""
    host = urlsplit(url).hostname or ""
    address = _address(host)
    if address is not None and (address.is_link_local or address in METADATA_SERVICES):
        return f"{host} may be the instance metadata service (link-local): never called"
    if cleartext is not None and url.startswith("http://") and not is_loopback(url):
        return f"plain http is allowed only on loopback {cleartext}"
    return None
