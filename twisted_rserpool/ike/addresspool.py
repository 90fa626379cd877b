"""Virtual IP addresses for remote access clients (RFC 7296 sections 2.19 and 3.15).

An ``AddressPool`` hands out addresses of its networks (``--address-pool 10.8.0.0/24``,
IPv4 and IPv6, several) to IKE SAs that ask with CP(CFG_REQUEST). It does no I/O and keeps
no time: the IKE SA leases in IKE_AUTH and releases when it ends.

Leases are per client identity: the authenticated identity of the client (its EAP identity
after EAP, else its IDi) holds at most one address of each family, and every IKE SA of that
identity shares it. A client that reconnects while its old IKE SA still exists (it restarted,
or it reauthenticates make-before-break, RFC 7296 2.8.3) thus gets the same address back, and
its traffic selectors stay valid; the address returns to the pool when the last IKE SA of the
identity goes (deleted, unreachable, redirected away, failed). Two devices that share one
identity share one address too: give each device its own identity. An address is never
leased to two identities at once, and a rekeyed IKE SA hands its lease to its successor
(``transfer``).

A client may ask for a specific address (a non-empty INTERNAL_IP4_ADDRESS, usually the one it
had before): it gets it when the address is in the pool and free (or already its own), else
another one. The network and broadcast addresses of an IPv4 network, and the Subnet-Router
anycast address of an IPv6 one, are never leased; neither are ``reserved`` addresses (the
gateway's own address on its TUN device, say).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from twisted.logger import Logger

__all__ = ["AddressPool", "Lease", "parse_pool"]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def parse_pool(text: str) -> IPNetwork:
    """A pool network such as ``10.8.0.0/24`` or ``fd00:8::/64`` (host bits are an error).

    Every network has an address to lease: a /31 both (RFC 3021), a /32 its one.
    """
    return ipaddress.ip_network(text.strip(), strict=True)


@dataclass
class Lease:
    """An address leased to ``identity``, held by the IKE SAs in ``holders``."""

    address: IPAddress
    network: IPNetwork
    identity: Hashable
    holders: set[Hashable] = field(default_factory=set)


class AddressPool:
    """Leases addresses of ``networks`` to client identities (see the module docstring)."""

    log = Logger()

    def __init__(self, networks: Iterable[IPNetwork], reserved: Iterable[IPAddress] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        self.reserved = frozenset(reserved)
        for a in self.networks:
            for b in self.networks:
                if a is not b and a.version == b.version and a.overlaps(b):
                    raise ValueError(f"address pools {a} and {b} overlap")
        self._leases: dict[IPAddress, Lease] = {}
        self._by_identity: dict[tuple[Hashable, int], Lease] = {}
        self._by_holder: dict[Hashable, list[Lease]] = {}
        # Next offset to try in each network: new leases go round the pool, so a released
        # address is not handed to the next client at once.
        self._cursor: dict[IPNetwork, int] = dict.fromkeys(self.networks, 0)
        # Addresses taken (leased or reserved) per network: exhaustion is known at once.
        self._taken: dict[IPNetwork, int] = {
            n: sum(1 for r in self.reserved if r.version == n.version and self._usable(n, r))
            for n in self.networks
        }

    # --- queries --------------------------------------------------------------------------

    def families(self) -> frozenset[int]:
        """The IP versions this pool has addresses of."""
        return frozenset(n.version for n in self.networks)

    def network_of(self, address: IPAddress) -> IPNetwork | None:
        """The pool network ``address`` may be leased from, or None."""
        for network in self.networks:
            if (
                network.version == address.version
                and address in network
                and self._usable(network, address)
            ):
                return network
        return None

    def lease_of(self, address: IPAddress) -> Lease | None:
        """The lease of ``address``, or None when it is free."""
        return self._leases.get(address)

    def held_by(self, holder: Hashable) -> tuple[IPAddress, ...]:
        """The addresses ``holder`` (an IKE SA) holds."""
        return tuple(lease.address for lease in self._by_holder.get(holder, ()))

    def __len__(self) -> int:
        """The number of addresses leased."""
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._leases.values()))

    def size(self, version: int) -> int:
        """How many addresses of IP ``version`` the pool can lease (at most 2**64 counted)."""
        total = 0
        for network in self.networks:
            if network.version == version:
                total += min(self._span(network), 2**64)
        return total - sum(1 for r in self.reserved if r.version == version and self.network_of(r))

    # --- leasing --------------------------------------------------------------------------

    def acquire(
        self,
        holder: Hashable,
        identity: Hashable,
        version: int,
        requested: IPAddress | None = None,
    ) -> IPAddress | None:
        """An address of IP ``version`` for ``identity``, now held by ``holder`` too.

        The identity's existing lease comes first; then ``requested`` when it is in the
        pool and free; then the next free address. None when the pool has no address of
        that family left (the caller answers INTERNAL_ADDRESS_FAILURE).
        """
        lease = self._by_identity.get((identity, version))
        if lease is None:
            address = self._choose(version, requested)
            if address is None:
                self.log.info(
                    "address pool exhausted: no IPv{version} address for {identity}",
                    version=version,
                    identity=str(identity),
                )
                return None
            network = self.network_of(address)
            assert network is not None
            lease = Lease(address, network, identity)
            self._leases[address] = lease
            self._taken[network] += 1
            self._by_identity[(identity, version)] = lease
        if holder not in lease.holders:
            lease.holders.add(holder)
            self._by_holder.setdefault(holder, []).append(lease)
        return lease.address

    def release(self, holder: Hashable) -> tuple[IPAddress, ...]:
        """``holder`` (an IKE SA that ended) lets go; returns the addresses now free."""
        freed: list[IPAddress] = []
        for lease in self._by_holder.pop(holder, ()):
            lease.holders.discard(holder)
            if not lease.holders:
                del self._leases[lease.address]
                del self._by_identity[(lease.identity, lease.address.version)]
                self._taken[lease.network] -= 1
                freed.append(lease.address)
        return tuple(freed)

    def transfer(self, old: Hashable, new: Hashable) -> None:
        """The leases of ``old`` pass to ``new`` (a rekeyed IKE SA and its successor)."""
        for lease in self._by_holder.pop(old, ()):
            lease.holders.discard(old)
            if new not in lease.holders:
                lease.holders.add(new)
                self._by_holder.setdefault(new, []).append(lease)

    # --- internals ------------------------------------------------------------------------

    @staticmethod
    def _span(network: IPNetwork) -> int:
        """How many offsets of ``network`` can be leased (offset 0 is the first usable)."""
        if network.version == 4 and network.prefixlen < 31:
            return network.num_addresses - 2  # network and broadcast
        if network.version == 6 and network.prefixlen < 127:
            return network.num_addresses - 1  # Subnet-Router anycast (RFC 4291 2.6.1)
        return network.num_addresses

    @staticmethod
    def _first(network: IPNetwork) -> int:
        skip = (network.version == 4 and network.prefixlen < 31) or (
            network.version == 6 and network.prefixlen < 127
        )
        return int(network.network_address) + (1 if skip else 0)

    def _usable(self, network: IPNetwork, address: IPAddress) -> bool:
        if address.version != network.version:
            return False
        offset = int(address) - self._first(network)
        return 0 <= offset < self._span(network)

    def _free(self, address: IPAddress) -> bool:
        return address not in self._leases and address not in self.reserved

    def _choose(self, version: int, requested: IPAddress | None) -> IPAddress | None:
        if (
            requested is not None
            and requested.version == version
            and self.network_of(requested) is not None
            and self._free(requested)
        ):
            return requested
        for network in self.networks:
            if network.version != version:
                continue
            address = self._next_free(network)
            if address is not None:
                return address
        return None

    def _next_free(self, network: IPNetwork) -> IPAddress | None:
        span = self._span(network)
        first = self._first(network)
        taken = self._taken[network]
        if taken >= span:
            return None
        start = self._cursor[network]
        make = IPv4Address if network.version == 4 else IPv6Address
        # At most ``taken`` + 1 addresses are looked at: every one skipped is taken.
        for step in range(taken + 1):
            offset = (start + step) % span
            address = make(first + offset)
            if self._free(address):
                self._cursor[network] = (offset + 1) % span
                return address
        return None  # pragma: no cover (taken < span guarantees a free one above)
