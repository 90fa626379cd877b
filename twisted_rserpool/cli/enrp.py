"""``rserpool pools``, ``pe`` and ``peers``: tables of an ENRP server's ``GET /status``.

The document is the one :func:`twisted_rserpool.enrp.admin.status` builds; a document of
another shape raises :class:`KeyError`, :class:`TypeError` or :class:`ValueError`.
"""

from __future__ import annotations

from typing import Any

from twisted_rserpool.cli.table import formatTable, isoTime, relativeTime, runningText

#: The largest RFC 5356 load value (fully used).
_FULL_LOAD = 0xFFFFFFFF


def policyName(policy: dict[str, Any]) -> str:
    """The policy's name alone: ``LeastUsed``, ``WeightedRoundRobin``, ``RoundRobin``."""
    return str(policy["type"]).removesuffix("Policy")


def policyText(policy: dict[str, Any]) -> str:
    """``LeastUsed load 25.0%``, ``WeightedRoundRobin weight 3``, ``RoundRobin``."""
    words = [policyName(policy)]
    for key in ("weight", "priority"):
        if key in policy:
            words.append(f"{key} {policy[key]}")
    for key, label in (("load", "load"), ("load_degradation", "degradation")):
        if key in policy:
            words.append(f"{label} {100 * int(policy[key]) / _FULL_LOAD:.1f}%")
    return " ".join(words)


def transportText(transport: dict[str, Any] | None) -> str | None:
    """``tcp 127.0.0.1:7001`` (every address; ``(data+control)`` when ASAP uses it too)."""
    if transport is None:
        return None
    kind = str(transport["type"]).removesuffix("Transport").lower()
    port = transport.get("port")
    addresses = [
        (f"[{a}]" if ":" in a else a) + (f":{port}" if port is not None else "")
        for a in map(str, transport["addresses"])
    ]
    use = " (data+control)" if transport.get("transport_use") == "DATA_PLUS_CONTROL" else ""
    return f"{kind} {' '.join(addresses)}{use}"


def _life(seconds: int) -> str:
    return "infinite" if seconds < 0 else f"{seconds} s"


def poolsTable(document: dict[str, Any]) -> str:
    """One row per pool: handle, policy name, PE count, the home ENRP servers of its PEs.

    The pool's policy is only its name: a pool has no load or weight of its own (the
    values of its first PE's policy); each PE's are in :func:`elementsTable`."""
    rows = []
    for pool in document["pools"]:
        elements = pool["pool_elements"]
        homes = sorted({e["home_server_identifier"] for e in elements})
        rows.append(
            (pool["pool_handle"], policyName(pool["policy"]), len(elements), " ".join(homes))
        )
    if not rows:
        return "no pools\n"
    return formatTable(("POOL", "POLICY", "PES", "HOME ENRP SERVERS"), rows)


def selectPool(document: dict[str, Any], handle: str | None) -> list[dict[str, Any]]:
    """The pools to list: all, or the one named ``handle`` (:class:`LookupError` if none)."""
    pools: list[dict[str, Any]] = document["pools"]
    if handle is None:
        return pools
    chosen = [p for p in pools if p["pool_handle"] == handle]
    if not chosen:
        raise LookupError(handle)
    return chosen


def elementsTable(document: dict[str, Any]) -> str:
    """One row per PE of the document's pools: identifier, transport, policy with its load, home
    ENRP server, the identity that registered it, its owner identity, and its life."""
    now = isoTime(document.get("now"))
    rows = [
        (
            pool["pool_handle"],
            pe["pe_identifier"],
            transportText(pe["user_transport"]),
            policyText(pe["policy"]),
            pe["home_server_identifier"],
            pe["identity"],
            pe["owner_identity"],
            _life(int(pe["registration_life"])),
            relativeTime(pe["expires_at"], now),
        )
        for pool in document["pools"]
        for pe in pool["pool_elements"]
    ]
    if not rows:
        return "no pool elements\n"
    headers = (
        "POOL", "PE", "TRANSPORT", "POLICY", "HOME", "REGISTERED BY", "OWNER", "LIFE", "EXPIRES",
    )  # fmt: skip
    return formatTable(headers, rows)


def peersTable(document: dict[str, Any]) -> str:
    """One row per ENRP peer: identifier, identity, state, connections, when last heard,
    its checksum and ours of its PEs, how many PEs it owns here, resynchronisation."""
    now = isoTime(document.get("now"))
    rows = [
        (
            peer["server"],
            peer.get("identity"),
            peer["state"],
            peer.get("connections"),
            relativeTime(peer.get("last_heard"), now),
            peer.get("checksum"),
            peer.get("local_checksum"),
            peer.get("pool_elements"),
            peer.get("resynchronising"),
        )
        for peer in document["peers"]
    ]
    if not rows:
        return "no ENRP peers\n"
    headers = (
        "SERVER", "IDENTITY", "STATE", "CONNECTIONS", "LAST HEARD", "CHECKSUM", "LOCAL CHECKSUM",
        "PES", "RESYNC",
    )  # fmt: skip
    return formatTable(headers, rows)


def serverLine(document: dict[str, Any]) -> str:
    """The server's identity in one line, above a table."""
    mode = "secure" if document.get("secure") else "INSECURE"
    return f"ENRP server {document['server_identifier']} ({runningText(document)}, {mode})\n"


__all__ = [
    "elementsTable",
    "peersTable",
    "policyName",
    "policyText",
    "poolsTable",
    "selectPool",
    "serverLine",
    "transportText",
]
