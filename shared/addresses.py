"""Which local addresses to offer as ICE host candidates (both ends of the uplink use it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class HostAddresses(Protocol):
    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]: ...


def host_address_picker(addresses: Sequence[str]) -> HostAddresses:
    """A replacement for ``aioice.ice.get_host_addresses(use_ipv4, use_ipv6)`` that offers
    only ``addresses`` (aioice otherwise takes every interface except loopback, with no
    option to choose): e.g. ``["127.0.0.1"]`` keeps tests and benchmarks on loopback."""
    chosen = list(addresses)

    def pick(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    return pick
