"""The codec classes behave alike in pure Python and in the mypyc build
(``scripts/compile --test`` runs these against it): their class constants are no fields,
and the message classes that Python code may subclass (``Message``,
``HandleResolutionResponse``: enrp.resolution caches its answers in one) keep working."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields, is_dataclass
from ipaddress import IPv4Address
from types import ModuleType

import pytest

from twisted_rserpool.enrp.resolution import _CachedAnswer as CachedAnswer
from twisted_rserpool.wire import asap, enrp, parameters, tcpmapping
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    POLICY_CLASSES,
    PoolElementParameter,
    PoolHandleParameter,
    RoundRobinPolicy,
    TcpTransport,
)

_ADDRESS = IPv4Address("127.0.0.1")
_PE = PoolElementParameter(
    7, 1, 30, TcpTransport(80, _ADDRESS), RoundRobinPolicy(), TcpTransport(3863, _ADDRESS)
)


def _classes(module: ModuleType) -> list[type]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and value.__module__ == module.__name__ and is_dataclass(value)
    ]


@pytest.mark.parametrize("module", [asap, enrp, parameters, tcpmapping])
def test_class_constants_are_no_fields(module: ModuleType) -> None:
    """TYPE and POLICY_TYPE are class attributes, never dataclass fields (mypyc made them
    fields while they stood in the dataclass bodies: mypyc issue 1122)."""
    for cls in _classes(module):
        names = {f.name for f in fields(cls)}
        assert not names & {"TYPE", "POLICY_TYPE"}, cls


def test_every_class_has_its_type_code() -> None:
    """Each message class is registered under its own TYPE; each parameter and chunk class
    that has a TYPE has the one its enum names; each policy class its POLICY_TYPE."""
    for registry in (asap.MESSAGE_CLASSES, enrp.MESSAGE_CLASSES):
        assert all(code == cls.TYPE for code, cls in registry.items())
    assert len(asap.MESSAGE_CLASSES) == 14 and len(enrp.MESSAGE_CLASSES) == 10
    assert parameters.PoolHandleParameter.TYPE == parameters.ParameterType.POOL_HANDLE
    assert parameters.UdpLiteTransport.TYPE == parameters.ParameterType.UDP_LITE_TRANSPORT
    assert parameters.UnknownPolicy.TYPE == parameters.ParameterType.POOL_MEMBER_SELECTION_POLICY
    assert all(code == cls.POLICY_TYPE for code, (cls, _) in POLICY_CLASSES.items())
    chunks = (tcpmapping.Data, tcpmapping.Init, tcpmapping.Ack)
    assert [cls.TYPE for cls in chunks] == [0, 1, 3]
    assert [tcpmapping.Heartbeat.TYPE, tcpmapping.HeartbeatAck.TYPE] == [4, 5]


@dataclass(frozen=True, slots=True)
class Private(Message):
    """A message of a private type, defined in Python."""

    value: bytes

    def _body(self) -> bytes:
        return PoolHandleParameter(self.value).encode()


Private.TYPE = 0x3F


def test_a_slotted_python_subclass_keeps_the_inherited_fields() -> None:
    """The subclass's constructor sets the inherited fields where the inherited (compiled)
    methods read them: the A flag (``_flags``), and the answer encodes, once, to what the
    plain response encodes to."""
    plain = asap.HandleResolutionResponse(b"pool", (_PE,), RoundRobinPolicy(), True)
    body = PoolHandleParameter(b"pool").encode() + RoundRobinPolicy().encode() + _PE.encode()
    cached = CachedAnswer(b"pool", (_PE,), RoundRobinPolicy(), True, parameters=body)
    assert cached.accept_updates is True
    assert cached.encode() == plain.encode()
    assert cached.encode() is cached.encode()
    assert asap.decode(cached.encode()) == plain
    assert [f.name for f in fields(cached)] == [
        "unrecognized_parameters",
        "pool_handle",
        "pool_elements",
        "policy",
        "accept_updates",
        "error",
        "parameters",
        "_wire",
    ]
    assert not hasattr(cached, "__dict__")


def test_a_python_message_subclass_encodes_with_its_type() -> None:
    """A Message subclass written in Python: its TYPE and its body, and the (compiled)
    base's header and padding."""
    message = Private(b"abc")
    assert message.encode() == b"\x3f\x00\x00\x0c" + b"\x00\x09\x00\x07abc\x00"
    assert message.unrecognized_parameters == ()
    assert message.TYPE == 0x3F
