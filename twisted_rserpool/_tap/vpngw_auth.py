"""The authentication options of ``twisted vpngw``: certificates, client authentication
(PSK, certificates, EAP-MSCHAPv2), and the strongSwan client configuration it logs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from twisted.python import usage

from twisted_rserpool.ike.auth.certificates import (
    Credentials,
    TrustAnchors,
    identity_in_certificate,
    identity_of_certificate,
)
from twisted_rserpool.ike.auth.eap import MsChapV2Authenticator, UsersFile
from twisted_rserpool.ike.config import PEER_AUTH_METHODS, Identity, PskTable
from twisted_rserpool.ike.constants import IdType
from twisted_rserpool.ike.reload import loadCredentials, loadEapUsers, loadSecrets, loadTrust

__all__ = [
    "AUTH_FLAGS",
    "AUTH_PARAMETERS",
    "GENERATED_PSK_FILE",
    "auth_config",
    "check_auth",
    "client_hint",
    "write_generated_psk",
]

#: The file in the state directory that keeps the generated pre-shared key (mode 0600).
GENERATED_PSK_FILE = "generated.secrets"

DEFAULT_IDENTITY = "vpngw@localhost"

AUTH_FLAGS: list[Any] = [
    [
        "rsa-pss",
        None,
        "Sign with RSASSA-PSS instead of PKCS#1 v1.5 when --private-key is RSA and the client "
        "supports RFC 7427 signatures.",
    ],
]

AUTH_PARAMETERS: list[Any] = [
    [
        "state-dir",
        None,
        "vpngw-state",
        "Directory (mode 0700) for the pre-shared key generated when no --secrets is given "
        f"({GENERATED_PSK_FILE}, mode 0600, in the --secrets format; the key is never "
        "logged) and the --admin bearer token (admin.token, mode 0600).",
    ],
    [
        "certificate",
        None,
        None,
        "PEM file with the gateway's certificate (then any intermediate CA certificates): "
        "the gateway authenticates with it (RFC 7427 digital signatures with RSA or ECDSA, "
        "or RFC 7296/4754 methods 1 and 9-11 for clients that do not announce RFC 7427) "
        "instead of a pre-shared key. Needs --private-key. --identity must be in it (as a "
        "dNSName, rfc822Name or iPAddress subjectAltName, or the subject DN); without "
        "--identity it is the first dNSName, else the subject DN.",
    ],
    ["private-key", None, None, "PEM file with the private key (RSA or ECDSA) of --certificate."],
    [
        "ca",
        None,
        None,
        "PEM file of the CA certificates that issue client certificates (for --client-auth "
        "certificate); the gateway names them in CERTREQ (SHA-1 of their public keys).",
    ],
    [
        "client-auth",
        None,
        "psk",
        "How clients authenticate: 'psk' (--secrets), 'certificate' (a certificate chaining "
        "to --ca that contains the client's IKE identity) or 'eap-mschapv2' (EAP-MSCHAPv2, "
        "RFC 7296 section 2.16, with the users of --eap-users; the gateway authenticates "
        "itself with --certificate, or a pre-shared key when there is none).",
    ],
    [
        "eap-users",
        None,
        None,
        "File of EAP-MSCHAPv2 users, one 'name : EAP \"password\"' per line, as strongSwan's "
        "ipsec.secrets writes them (# comments); owner only, as --secrets.",
    ],
    [
        "send-cert",
        None,
        "ifasked",
        "When the gateway sends its certificate (CERT payloads): 'ifasked' (the client sent "
        "a CERTREQ), 'always' or 'never'.",
    ],
    [
        "max-eap-rounds",
        None,
        8,
        "IKE_AUTH requests an EAP conversation may take before the client is refused "
        "(AUTHENTICATION_FAILED).",
        int,
    ],
]


def check_auth(options: usage.Options) -> None:
    """Load and check the authentication options (sets identity, psks, credentials, ...)."""
    if options["client-auth"] not in PEER_AUTH_METHODS:
        raise usage.UsageError(f"--client-auth must be one of {', '.join(PEER_AUTH_METHODS)}")
    if options["send-cert"] not in ("ifasked", "always", "never"):
        raise usage.UsageError("--send-cert must be ifasked, always or never")
    if options["max-eap-rounds"] < 1:
        raise usage.UsageError("--max-eap-rounds must be at least 1")
    credentials: Credentials | None = None
    if (options["certificate"] is None) != (options["private-key"] is None):
        raise usage.UsageError("give --certificate and --private-key together")
    if options["certificate"] is not None:
        try:
            credentials = loadCredentials(options["certificate"], options["private-key"])
        except ValueError as e:
            raise usage.UsageError(f"--certificate/--private-key: {e}") from None
    options["credentials"] = credentials
    try:
        if options["identity"] is not None:
            identity = Identity.parse(options["identity"])
        elif credentials is not None:
            identity = identity_of_certificate(credentials.certificate)
        else:
            identity = Identity.parse(DEFAULT_IDENTITY)
    except ValueError as e:
        raise usage.UsageError(f"--identity: {e}") from None
    if credentials is not None and not identity_in_certificate(identity, credentials.certificate):
        raise usage.UsageError(
            f"--identity {identity} is not in the certificate of "
            f"{credentials.certificate.subject.rfc4514_string()}"
        )
    options["identity"] = identity
    trust: TrustAnchors | None = None
    if options["ca"] is not None:
        try:
            trust = loadTrust(options["ca"])
        except ValueError as e:
            raise usage.UsageError(f"--ca: {e}") from None
    elif options["client-auth"] == "certificate":
        raise usage.UsageError("--client-auth certificate needs --ca")
    options["trust"] = trust
    options["eap"] = None
    if options["client-auth"] == "eap-mschapv2":
        if options["eap-users"] is None:
            raise usage.UsageError("--client-auth eap-mschapv2 needs --eap-users")
        try:
            users = loadEapUsers(options["eap-users"])
        except ValueError as e:
            raise usage.UsageError(f"--eap-users: {e}") from None
        options["eap"] = MsChapV2Authenticator(users)
        options["eap_users"] = users
    options["generated_psk"] = None
    if options["secrets"] is not None:
        try:
            options["psks"] = loadSecrets(options["secrets"])
        except ValueError as e:
            raise usage.UsageError(f"--secrets: {e}") from None
    elif options["client-auth"] == "psk" or credentials is None:
        # Someone needs a key: the clients (psk), or the gateway itself (no certificate).
        psk = secrets.token_urlsafe(24)
        options["generated_psk"] = psk
        options["psks"] = PskTable(default=psk.encode("ascii"))
    else:
        options["psks"] = PskTable()


def write_generated_psk(options: usage.Options) -> Path | None:
    """Write the generated pre-shared key (if any) to the state directory, mode 0600.

    The file is in the ``--secrets`` format (``* : "key"``), so a later start can use it
    with ``--secrets``. Returns its path (also kept as ``options["generated_psk_file"]``).
    """
    psk = options["generated_psk"]
    if psk is None:
        return None
    state = Path(options["state-dir"]).absolute()  # the log says where, from anywhere
    path = state / GENERATED_PSK_FILE
    temporary = path.with_name(path.name + ".tmp")
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before the key is written: it is never readable by others.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as f:
            f.write(
                f'# Generated by twistd vpngw: any client identity may use this key.\n* : "{psk}"\n'
            )
        os.replace(temporary, path)
    except OSError as e:
        raise usage.UsageError(f"--state-dir: {e.filename or state}: {e.strerror}") from None
    options["generated_psk_file"] = path
    return path


def auth_config(options: usage.Options) -> dict[str, Any]:
    """The IkeConfig fields of the authentication options."""
    return {
        "credentials": options["credentials"],
        "trust": options["trust"],
        "peer_auth": options["client-auth"],
        "eap": options["eap"],
        "send_cert": options["send-cert"],
        "rsa_pss": bool(options["rsa-pss"]),
        "max_eap_rounds": options["max-eap-rounds"],
    }


def _swan_id(identity: Identity) -> str:
    if identity.id_type == IdType.ID_FQDN:
        return "@" + str(identity)
    if identity.id_type == IdType.ID_DER_ASN1_DN:
        return '"asn1dn:#' + identity.data.hex() + '"'
    return str(identity)


#: A swanctl.conf section: settings (``str``) and subsections (``dict``), in order.
Section = dict[str, "str | Section"]


def render_swanctl(section: Section, indent: str = "") -> list[str]:
    """``section`` as swanctl.conf lines, one setting per line (swanctl refuses two)."""
    lines: list[str] = []
    for name, value in section.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{name} {{")
            lines.extend(render_swanctl(value, indent + "  "))
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{name} = {value}")
    return lines


def client_hint(
    options: usage.Options,
    proposals: str,
    esp_proposals: str,
    *,
    vips: str | None = None,
    remote_ts: str | None = None,
) -> str:
    """A ready-to-paste strongSwan swanctl.conf for a client of these options.

    ``vips`` and ``remote_ts`` are the client's virtual IP request and protected subnets,
    when the gateway leases addresses.
    """
    host, port = options["addresses"][0], options["port"]
    credentials: Credentials | None = options["credentials"]
    client_auth = options["client-auth"]
    notes: list[str] = []
    connection: Section = {"version": "2", "remote_addrs": str(host)}
    if port != 500:
        connection["remote_port"] = str(port)
    connection["proposals"] = proposals
    if vips is not None:
        connection["vips"] = vips
    users: UsersFile | None = options["eap_users"] if client_auth == "eap-mschapv2" else None
    user = None if users is None else next(iter(users.users), b"user").decode("utf-8", "replace")
    if client_auth == "certificate":
        connection["local"] = {"auth": "pubkey", "certs": "client.pem", "id": "client@localhost"}
        notes.append(
            "client.pem: issued by a CA of --ca, with client@localhost as a subjectAltName"
        )
    elif user is not None:
        connection["local"] = {"auth": "eap-mschapv2", "eap_id": user}
    else:
        connection["local"] = {"auth": "psk", "id": "client@localhost"}
    identity = _swan_id(options["identity"])
    if credentials is not None:
        connection["remote"] = {"auth": "pubkey", "id": identity}
        issuer = credentials.certificate.issuer.rfc4514_string()
        notes.append(f"the CA certificate of {issuer} goes into /etc/swanctl/x509ca/")
    else:
        connection["remote"] = {"auth": "psk", "id": identity}
    child: Section = {} if remote_ts is None else {"remote_ts": remote_ts}
    child["esp_proposals"] = esp_proposals
    connection["children"] = {"net": child}
    secrets: Section = {}
    if options["generated_psk"] is not None:
        # The key itself stays in its 0600 file: the hint is logged.
        where = options.get("generated_psk_file") or f"--state-dir's {GENERATED_PSK_FILE}"
        secrets["ike-vpngw"] = {"secret": f'"<the key in {where}>"'}
    elif credentials is None or client_auth == "psk":
        secrets["ike-vpngw"] = {"secret": '"<the key in --secrets>"'}
    if user is not None:
        secrets["eap-vpngw"] = {"id": user, "secret": f'"<{user}\'s password>"'}
    document: Section = {"connections": {"vpngw": connection}}
    if secrets:
        document["secrets"] = secrets
    lines = ["connect with strongSwan (swanctl.conf):"]
    lines.extend(f"# {note}" for note in notes)
    lines.extend(render_swanctl(document))
    return "\n".join(lines)
