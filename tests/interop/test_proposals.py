"""strongSwan 5.9.8 initiators with the proposals the gateway used to refuse, against one
``twistd -n vpngw`` with its default proposals (any combination of what it implements).

One gateway and one charon serve the whole module: charon holds one connection per case,
each with its own client identity and CHILD_SA traffic selector (10.N.0.0/16), so every
case is told apart in both logs. This kernel has no ESP: strongSwan cannot install the
CHILD_SA the gateway negotiated and deletes it again; the IKE SA stays up, and the gateway
records the CHILD_SA with its suite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.interop.charon import Charon, running
from tests.interop.test_strongswan import PSK, Gateway, require_strongswan

pytestmark = pytest.mark.interop

ESP_DEFAULT = "aes128gcm16, aes128-sha256"

# (IKE proposal, ESP proposal, IKE suite the gateway must log, ESP suite it must record);
# None: whatever the gateway chose, logged for the report.
CASES: list[tuple[str, str, str | None, str | None]] = [
    # IKE proposals refused before although every algorithm was implemented
    ("aes256gcm16-prfsha256-x25519", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes256-sha256-modp2048", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes128-sha256-ecp384", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes256gcm16-prfsha384-ecp384", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes128-sha256-ecp256", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes256-sha256-x25519", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes128gcm16-prfsha256-x25519", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes128-sha384-x25519", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes256gcm16-prfsha256-modp2048", ESP_DEFAULT, None, "aes128gcm16"),
    # IKE algorithms that were missing
    ("chacha20poly1305-prfsha256-x25519", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes128-sha256-modp3072", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes256-sha256-modp4096", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes128-sha1-modp2048", ESP_DEFAULT, None, "aes128gcm16"),
    ("aes256-sha512-ecp521", ESP_DEFAULT, None, "aes128gcm16"),
    # ESP proposals refused before, then ESP algorithms that were missing
    ("aes128-sha256-x25519", "aes256-sha256", "aes128-sha256-x25519", "aes256-sha256"),
    ("aes128-sha256-x25519", "aes256-sha384", "aes128-sha256-x25519", "aes256-sha384"),
    ("aes128-sha256-x25519", "aes128gcm16-esn", "aes128-sha256-x25519", "aes128gcm16-esn"),
    ("aes128-sha256-x25519", "chacha20poly1305", "aes128-sha256-x25519", "chacha20poly1305"),
    ("aes128-sha256-x25519", "aes128-sha1", "aes128-sha256-x25519", "aes128-sha1"),
    # strongSwan's own defaults
    ("default", "default", None, None),
]


def _conf(gateway: str) -> str:
    connections = []
    for number, (ike, esp, _, _) in enumerate(CASES, start=1):
        connections.append(f"""  c{number} {{
    version = 2
    mobike = no
    local_addrs = 127.0.0.1
    remote_addrs = {gateway}
    remote_port = 500
    proposals = {ike}
    local {{ auth = psk
      id = case{number}@test }}
    remote {{ auth = psk
      id = gw@test }}
    children {{ net{number} {{ esp_proposals = {esp}
      remote_ts = 10.{number}.0.0/16 }} }}
  }}""")
    body = "\n".join(connections)
    return f'connections {{\n{body}\n}}\nsecrets {{ ike-any {{ secret = "{PSK}" }} }}\n'


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Charon]]:
    require_strongswan()
    tmp = tmp_path_factory.mktemp("proposals")
    secrets = tmp / "any.secrets"
    secrets.write_text(f'* : "{PSK}"\n')  # every case identity (the last --secrets wins)
    secrets.chmod(0o600)  # vpngw refuses a key file others may read
    gw = Gateway(tmp, "--secrets", str(secrets))
    try:
        with running(Charon(_conf(gw.host), retransmit_tries=2)) as charon:
            yield gw, charon
    finally:
        gw.stop()


@pytest.mark.parametrize(
    "number,ike,esp,ike_suite,esp_suite",
    [(n, *case) for n, case in enumerate(CASES, start=1)],
    ids=[f"{ike}|{esp}" for ike, esp, _, _ in CASES],
)
def test_strongswan_proposal_establishes(
    peers: tuple[Gateway, Charon],
    number: int,
    ike: str,
    esp: str,
    ike_suite: str | None,
    esp_suite: str | None,
) -> None:
    """The strongSwan initiator with this proposal gets an IKE SA and a CHILD_SA from the
    default gateway; the gateway logs the suites it chose, from the offered algorithms."""
    gw, charon = peers
    charon.swanctl("--initiate", "--child", f"net{number}", "--timeout", "15", check=False)
    established = gw.wait_for_log(f"established with case{number}@test")
    line = re.search(rf"established with case{number}@test at .*\((\S+)\)$", established, re.M)
    assert line is not None, established
    chosen_ike = line.group(1)
    if ike != "default":
        assert chosen_ike == (ike_suite or ike)
    selector = f"10.{number}.0.0-10.{number}.255.255"
    log = gw.wait_for_log(selector)
    child = [entry for entry in log.splitlines() if selector in entry and "recorded" in entry]
    assert child, log
    chosen_esp = child[0].split("CHILD_SA ", 1)[1].split()[1]
    if esp_suite is not None:
        assert chosen_esp == esp_suite
    legacy = f"with case{number}@test uses legacy SHA-1 ({chosen_ike})"
    if "sha1" in chosen_ike:  # accepted, and the log says it is weak
        gw.wait_for_log(legacy)
    else:
        assert legacy not in log
    if chosen_esp.endswith("sha1"):
        gw.wait_for_log(f"uses legacy SHA-1 ({chosen_esp}), which RFC 8221")
    sas = charon.swanctl("--list-sas", "--ike", f"c{number}")
    assert "ESTABLISHED" in sas, sas
    # strongSwan's side of this case: its IKE_SA, the gateway's CHILD_SA answer, and the
    # proposals it accepted as consistent with its offer (RFC 7296 3.3.6)
    started = re.search(rf"initiating IKE_SA c{number}\[(\d+)\]", charon.log)
    assert started is not None, charon.log
    unique = started.group(1)
    segment = charon.wait_for_log(f"IKE_SA c{number}[{unique}] established between")
    segment = segment.split(started.group(0), 1)[1]
    segment = segment.split("initiating IKE_SA", 1)[0]
    assert "parsed IKE_AUTH response 1 [ IDr AUTH SA TSi TSr ]" in segment, segment
    selected = re.findall(r"selected proposal: (\S+)", segment)
    assert [p.split(":")[0] for p in selected] == ["IKE", "ESP"], segment
    print(
        f"case {number}: {ike} | {esp} -> gateway chose IKE {chosen_ike}, ESP {chosen_esp}; "
        f"strongSwan: {', '.join(selected)}"
    )
