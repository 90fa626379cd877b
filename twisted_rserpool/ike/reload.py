"""The files of an IKE gateway, read at start and again without a restart.

The loaders (:func:`loadSecrets`, :func:`loadEapUsers`, :func:`loadCredentials`,
:func:`loadTrust`, :func:`loadTargets`) read one file each and raise ``ValueError`` with a
one-line reason that names the file; ``twistd vpngw`` uses them at start and
:class:`GatewayReloader` uses them when asked again (on SIGHUP).

A reload replaces what a good file holds and logs what changed (identities, users, CA
subjects, certificate fingerprints and targets, never a key or password); a file that
cannot be used keeps what was loaded before, and one line says why. IKE SAs already
established (or half-open) keep the configuration they started with; the next
IKE_SA_INIT uses the new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.logger import Logger

from twisted_rserpool._reload import logKept, logKeysChanged
from twisted_rserpool.ike.auth.certificates import (
    Credentials,
    TrustAnchors,
    identity_in_certificate,
)
from twisted_rserpool.ike.auth.eap import MsChapV2Authenticator, UsersFile
from twisted_rserpool.ike.codec import GatewayIdentity
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.redirect import StaticGateways, parse_gateway
from twisted_rserpool.security.psk import readPrivateFile

__all__ = [
    "GatewayReloader",
    "loadCredentials",
    "loadEapUsers",
    "loadSecrets",
    "loadTargets",
    "loadTrust",
    "parseTargets",
]

log = Logger()

T = TypeVar("T")


def _read(path: str, secrets: str | None = None) -> bytes:
    """The file's bytes; a file of ``secrets`` (their name, such as "the EAP passwords")
    only if its owner alone may read and write it (``readPrivateFile``)."""
    try:
        return Path(path).read_bytes() if secrets is None else readPrivateFile(path, secrets)
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None


def _text(path: str, secrets: str | None = None) -> str:
    try:
        return _read(path, secrets).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at octet {e.start})") from None


def _named(path: str, parse: Callable[[str], T], secrets: str | None = None) -> T:
    """``parse(text of path)``; its ValueError prefixed with the path."""
    text = _text(path, secrets)
    try:
        return parse(text)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def loadSecrets(path: str) -> PskTable:
    """The pre-shared keys of a ``--secrets`` file (``identity : secret`` lines), which
    only its owner may read and write (mode 0600 or stricter)."""
    return _named(path, PskTable.parse, "the pre-shared keys")


def loadEapUsers(path: str) -> UsersFile:
    """The users of an ``--eap-users`` file (``name : EAP "password"`` lines), which only
    its owner may read and write (mode 0600 or stricter)."""
    return _named(path, UsersFile.parse, "the EAP passwords")


def loadCredentials(
    certificate: str, privateKey: str, identity: Identity | None = None
) -> Credentials:
    """The certificate chain and key of two PEM files; with ``identity``, it must be in the
    certificate (as a subjectAltName or the subject)."""
    certificatePem, keyPem = _read(certificate), _read(privateKey)
    try:
        credentials = Credentials.load(certificatePem, keyPem)
    except ValueError as e:
        raise ValueError(f"{certificate}, {privateKey}: {e}") from None
    if identity is not None and not identity_in_certificate(identity, credentials.certificate):
        raise ValueError(
            f"{certificate}: the identity {identity} is not in the certificate of "
            f"{credentials.certificate.subject.rfc4514_string()}"
        )
    return credentials


def loadTrust(path: str) -> TrustAnchors:
    """The CA certificates of a PEM file."""
    data = _read(path)
    try:
        return TrustAnchors.load(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def parseTargets(
    text: str, *, numbered: bool = False
) -> tuple[list[GatewayIdentity], list[int] | None]:
    """Redirect targets ``gw[=weight]``, separated by commas or lines (``#`` comments), as
    gateways and weights (None when no weight is given). A gateway is an IP address or a
    fully qualified DNS name (:func:`~twisted_rserpool.ike.redirect.parse_gateway`); with
    ``numbered`` a ValueError names the line (``line 3: ...``), as for a file."""
    gateways: list[GatewayIdentity] = []
    weights: list[int] = []
    weighted = False
    for number, line in enumerate(text.splitlines(), start=1):
        for raw in line.split("#", 1)[0].split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                gateway, weight = _target(item)
            except ValueError as e:
                raise ValueError(f"line {number}: {e}" if numbered else str(e)) from None
            weighted = weighted or weight is not None
            gateways.append(gateway)
            weights.append(1 if weight is None else weight)
    return gateways, weights if weighted else None


def _target(item: str) -> tuple[GatewayIdentity, int | None]:
    """One ``gw[=weight]`` item: the gateway and its weight (None if not given)."""
    if "=" not in item:
        return parse_gateway(item), None
    name, _, weightText = item.rpartition("=")
    gateway = parse_gateway(name)
    try:
        weight = int(weightText)
    except ValueError:
        raise ValueError(f"the weight of {name.strip()} is not a number") from None
    if weight <= 0:
        raise ValueError(f"the weight of {name.strip()} must be positive")
    return gateway, weight


def loadTargets(path: str) -> tuple[list[GatewayIdentity], list[int] | None]:
    """The redirect targets of a ``--redirect-targets`` file (see :func:`parseTargets`);
    a ValueError names the file and the line."""
    return _named(path, lambda text: parseTargets(text, numbered=True))


def _pskIdentities(table: PskTable) -> dict[str, bytes]:
    identities = {str(identity): key for identity, key in table.secrets.items()}
    if table.default is not None:
        identities["*"] = table.default
    return identities


def _eapUsers(users: object) -> dict[str, str]:
    """The users of a users file by name as text (other password stores: none known)."""
    if not isinstance(users, UsersFile):
        return {}
    return {name.decode("utf-8", "replace"): password for name, password in users.users.items()}


def _subjects(trust: TrustAnchors | None) -> dict[str, bytes]:
    if trust is None:
        return {}
    return {c.subject.rfc4514_string(): _fingerprint(c) for c in trust.certificates}


def _fingerprint(certificate: x509.Certificate) -> bytes:
    return certificate.fingerprint(hashes.SHA256())


class GatewayReloader:
    """Re-reads the files of the gateway whose IKE endpoints are ``endpoints``.

    Every path is optional (None: not configured, not reloaded). ``identity`` is the
    gateway's IKE identity, which a new certificate must contain; ``targets`` is the static
    target list that ``targetsFile`` fills. ``reloads`` and ``failures`` count reloads and
    the files kept because they could not be used; ``reloadedAt`` is when the last reload
    ran (the reactor's time, via ``clock``).
    """

    def __init__(
        self,
        endpoints: Sequence[IkeEndpoint],
        identity: Identity,
        *,
        secrets: str | None = None,
        eapUsers: str | None = None,
        certificate: str | None = None,
        privateKey: str | None = None,
        ca: str | None = None,
        targetsFile: str | None = None,
        targets: StaticGateways | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.identity = identity
        self.secrets = secrets
        self.eapUsers = eapUsers
        self.certificate = certificate
        self.privateKey = privateKey
        self.ca = ca
        self.targetsFile = targetsFile
        self.targets = targets
        self.clock = clock
        self.reloads = 0
        self.failures = 0
        self.reloadedAt: float | None = None

    @property
    def files(self) -> list[str]:
        """The files a reload reads."""
        named = [self.secrets, self.eapUsers, self.certificate, self.privateKey, self.ca]
        if self.targets is not None:
            named.append(self.targetsFile)
        return [path for path in named if path is not None]

    def reload(self) -> None:
        """Re-read every file; log what changed, or in one line why a file was kept."""
        self.reloads += 1
        if self.clock is not None:
            self.reloadedAt = self.clock()
        if not self.files:
            log.info("Reload: no secrets, certificate or targets file to read again")
            return
        if self.endpoints:
            self._reloadConfig(self.endpoints[0].config)
        self._reloadTargets()

    def _load(self, what: str, load: Callable[[], T]) -> T | None:
        try:
            return load()
        except ValueError as e:
            self.failures += 1
            logKept(what, str(e))
            return None

    def _reloadConfig(self, config: IkeConfig) -> None:
        changes: dict[str, Any] = {}
        if self.secrets is not None:
            path = self.secrets
            table = self._load("pre-shared keys", lambda: loadSecrets(path))
            if table is not None:
                logKeysChanged(path, _pskIdentities(config.psks), _pskIdentities(table))
                changes["psks"] = table
        if self.eapUsers is not None and isinstance(config.eap, MsChapV2Authenticator):
            path, old = self.eapUsers, config.eap
            users = self._load("EAP users", lambda: loadEapUsers(path))
            if users is not None:
                logKeysChanged(
                    path,
                    _eapUsers(old.users),
                    _eapUsers(users),
                    items="EAP users",
                    secret="password",
                )
                changes["eap"] = MsChapV2Authenticator(
                    users, server_name=old.server_name, random=old.random
                )
        if self.certificate is not None and self.privateKey is not None:
            certificate, key = self.certificate, self.privateKey
            credentials = self._load(
                "certificate and private key",
                lambda: loadCredentials(certificate, key, self.identity),
            )
            if credentials is not None:
                self._logCertificate(config.credentials, credentials)
                changes["credentials"] = credentials
        if self.ca is not None:
            path = self.ca
            trust = self._load("CA certificates", lambda: loadTrust(path))
            if trust is not None:
                logKeysChanged(
                    path,
                    _subjects(config.trust),
                    _subjects(trust),
                    items="CA certificates",
                    secret="certificate",
                )
                changes["trust"] = trust
        if changes:
            renewed = dataclasses.replace(config, **changes)
            for endpoint in self.endpoints:
                endpoint.config = renewed

    def _logCertificate(self, old: Credentials | None, new: Credentials) -> None:
        fingerprint = _fingerprint(new.certificate)
        unchanged = old is not None and _fingerprint(old.certificate) == fingerprint
        log.info(
            "Reload: {path}: certificate of {subject} (SHA-256 {fingerprint}), valid until "
            "{notAfter}, {chain} intermediate(s); {what}",
            path=self.certificate,
            subject=new.certificate.subject.rfc4514_string(),
            fingerprint=fingerprint.hex(),
            notAfter=new.certificate.not_valid_after_utc.isoformat(),
            chain=len(new.intermediates),
            what="unchanged" if unchanged else "replaced",
        )

    def _reloadTargets(self) -> None:
        if self.targetsFile is None or self.targets is None:
            return
        path, source = self.targetsFile, self.targets
        loaded = self._load("redirect targets", lambda: loadTargets(path))
        if loaded is None:
            return
        gateways, weights = loaded
        before = {str(g): w for g, w in source.weighted()}
        source.replace(gateways, weights)
        after = {str(g): w for g, w in source.weighted()}
        logKeysChanged(path, before, after, items="redirect targets", secret="weight")
