"""Who the client is: ``MOTHERSHIP_TRUSTED_PROXIES`` and ``client_address``.

A request's client is its socket peer, unless that peer is a trusted proxy: then it is the
right-most address of ``X-Forwarded-For`` that is not a trusted proxy (each proxy appends the
address it heard from, so everything left of that one may be made up by the client). The
sign-in lockout (django-axes), the per-address sign-in rate and the logs all ask
``client_address``; uvicorn is given the same list (``--forwarded-allow-ips``,
``mothership.processes.web_argv``), so the address it logs and the scheme it takes from
``X-Forwarded-Proto`` come from the same proxies. With none trusted (the default), both headers
count for nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from django.conf import settings

SETTING = "MOTHERSHIP_TRUSTED_PROXIES"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(raw: str) -> tuple[str, ...]:
    """``10.0.0.5, 10.1.0.0/16`` → ``("10.0.0.5", "10.1.0.0/16")``; a wrong entry raises ``ValueError``
    with a sentence naming it."""
    proxies = []
    for entry in (part.strip() for part in raw.replace(" ", ",").split(",")):
        if not entry:
            continue
        try:
            proxies.append(str(ipaddress.ip_network(entry)) if "/" in entry else str(ipaddress.ip_address(entry)))
        except ValueError:
            hint = ""
            if "/" in entry:
                try:
                    hint = f" (its network is {ipaddress.ip_network(entry, strict=False)})"
                except ValueError:
                    pass
            raise ValueError(
                f"{SETTING}: {entry!r} is not an IP address or a CIDR network{hint}; "
                "list the proxies' addresses, e.g. 127.0.0.1,10.0.0.0/8."
            ) from None
    return tuple(proxies)


@functools.lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(proxy) for proxy in proxies)


def _trusted(host: str, networks: tuple[_Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _host(hop: str) -> str:
    """An X-Forwarded-For entry without its port, as uvicorn reads it: ``1.2.3.4:80``, ``[::1]:80``."""
    if hop.startswith("["):
        end = hop.find("]")
        return hop[1:end] if end != -1 else hop
    if hop.count(":") == 1:
        return hop.rsplit(":", 1)[0]
    return hop


def client_address_from(peer: str, forwarded_for: str, trusted: Sequence[str]) -> str:
    """The client of a connection from ``peer`` that carried ``X-Forwarded-For: forwarded_for``."""
    networks = _networks(tuple(trusted))
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [_host(hop.strip()) for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    # Every hop is a trusted proxy: the first one is the client (uvicorn decides the same).
    return hops[0] if hops else peer


def client_address(request) -> str:
    """The request's client address (also ``AXES_CLIENT_IP_CALLABLE``). Under uvicorn, REMOTE_ADDR
    is already the client when the peer was trusted; reading it again gives the same address."""
    meta = request.META
    return client_address_from(
        meta.get("REMOTE_ADDR") or "", meta.get("HTTP_X_FORWARDED_FOR", ""), settings.MOTHERSHIP_TRUSTED_PROXIES
    )
