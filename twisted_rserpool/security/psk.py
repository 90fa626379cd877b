"""Pre-shared key files: one ``identity:hexkey`` per line, readable by their owner only.

The format::

    # comments and blank lines are ignored
    pe-17:8f1c0a3e9b5d47d2a6c4e0f1b2d3c4a5
    enrp-2:2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe

The identity is everything before the last colon (RFC 4279 section 5.1: a UTF-8 string;
here at most :data:`MAX_IDENTITY_BYTES` bytes, without control characters and without
whitespace at either end). The key is hexadecimal, at least :data:`MIN_KEY_BITS` bits.
An identity may appear only once. A file that group or others may read or write is
refused, as ``ssh`` refuses a private key with such a mode.
"""

from __future__ import annotations

import os
import secrets
import stat
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path

#: The shortest key accepted (RFC 4279 section 7 asks for keys of at least 128 bits).
MIN_KEY_BITS = 128
#: The longest key accepted; OpenSSL refuses longer ones.
MAX_KEY_BITS = 2048
#: The longest identity accepted, in UTF-8 bytes (OpenSSL's ``PSK_MAX_IDENTITY_LEN``).
MAX_IDENTITY_BYTES = 128
#: The size of keys :func:`generateKey` and :func:`createPskFile` make.
DEFAULT_KEY_BITS = 256
#: The largest PSK file read.
MAX_FILE_BYTES = 1 << 20


class PskFileError(ValueError):
    """A PSK file that cannot be used: unsafe permissions or malformed content.

    ``path`` names the file; ``line`` is the offending line number, when there is one.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None):
        self.path = os.fspath(path)
        self.line = line
        where = self.path if line is None else f"{self.path} line {line}"
        super().__init__(f"{where}: {message}")


def checkIdentity(identity: str) -> str:
    """Return ``identity`` if it may name a pre-shared key; raise ValueError otherwise."""
    if not identity:
        raise ValueError("PSK identity is empty")
    encoded = identity.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_IDENTITY_BYTES:
        raise ValueError(
            f"PSK identity is {len(encoded)} bytes long; at most {MAX_IDENTITY_BYTES} allowed"
        )
    if any(unicodedata.category(c).startswith("C") for c in identity):
        raise ValueError(f"PSK identity {identity!r} contains a control character")
    if identity != identity.strip():
        raise ValueError(f"PSK identity {identity!r} starts or ends with whitespace")
    return identity


def checkKey(key: bytes) -> bytes:
    """Return ``key`` if it is long enough (and not too long); raise ValueError otherwise."""
    bits = len(key) * 8
    if bits < MIN_KEY_BITS:
        raise ValueError(f"PSK is {bits} bits long; at least {MIN_KEY_BITS} bits required")
    if bits > MAX_KEY_BITS:
        raise ValueError(f"PSK is {bits} bits long; at most {MAX_KEY_BITS} bits allowed")
    return key


class PskTable(Mapping[str, bytes]):
    """An immutable map from PSK identity to key, as read from a PSK file."""

    __slots__ = ("_keys", "path")

    def __init__(self, keys: Mapping[str, bytes], path: str | None = None) -> None:
        checked: dict[str, bytes] = {}
        for identity, key in keys.items():
            checked[checkIdentity(identity)] = checkKey(bytes(key))
        self._keys = checked
        #: The file the keys came from, if any.
        self.path = path

    def __getitem__(self, identity: str) -> bytes:
        return self._keys[identity]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        # Never show the keys.
        return f"<PskTable {sorted(self._keys)!r} from {self.path!r}>"


def parsePskText(text: str, path: str = "<string>") -> PskTable:
    """Parse the content of a PSK file; ``path`` only names it in error messages."""
    keys: dict[str, bytes] = {}
    firstSeen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        identity, colon, hexKey = line.rpartition(":")
        if not colon:
            raise PskFileError(path, "expected 'identity:hexkey'", number)
        try:
            checkIdentity(identity)
        except ValueError as e:
            raise PskFileError(path, str(e), number) from None
        if identity in keys:
            raise PskFileError(
                path,
                f"duplicate identity {identity!r} (first on line {firstSeen[identity]})",
                number,
            )
        if not hexKey or any(c not in "0123456789abcdefABCDEF" for c in hexKey):
            raise PskFileError(path, f"the key of {identity!r} is not hex digits", number)
        if len(hexKey) % 2:
            raise PskFileError(
                path, f"the key of {identity!r} has an odd number of hex digits", number
            )
        key = bytes.fromhex(hexKey)
        try:
            checkKey(key)
        except ValueError as e:
            raise PskFileError(path, f"{identity!r}: {e}", number) from None
        keys[identity] = key
        firstSeen[identity] = number
    if not keys:
        raise PskFileError(path, "no keys (expected lines of 'identity:hexkey')")
    return PskTable(keys, path)


def readPrivateFile(path: str | os.PathLike[str], contents: str = "the pre-shared keys") -> bytes:
    """The bytes of a file of secrets (``contents`` names them), refusing one that group or
    others may read or write (as ``ssh`` refuses such a private key), one that is not a
    regular file, and one larger than :data:`MAX_FILE_BYTES`.

    Raises :class:`PskFileError` (a ValueError naming the file) for those, and OSError when
    the file cannot be opened.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PskFileError(name, "not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise PskFileError(
                name,
                f"mode {mode:04o} lets group or others access {contents}; "
                f"allow the owner only (chmod 600 {name})",
            )
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise PskFileError(name, f"larger than {MAX_FILE_BYTES} bytes")
    return data


def loadPskFile(path: str | os.PathLike[str]) -> PskTable:
    """Read a PSK file, refusing one that group or others may read or write.

    Raises :class:`PskFileError` (a ValueError) for unsafe permissions or bad content,
    and OSError when the file cannot be opened.
    """
    name = os.fspath(path)
    data = readPrivateFile(name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PskFileError(name, f"not UTF-8 ({e.reason} at byte {e.start})") from None
    return parsePskText(text, name)


def generateKey(bits: int = DEFAULT_KEY_BITS) -> bytes:
    """A new random key of ``bits`` bits (a multiple of 8)."""
    if bits % 8:
        raise ValueError("key size must be a multiple of 8 bits")
    return checkKey(secrets.token_bytes(bits // 8))


def formatPskText(keys: Mapping[str, bytes], comment: str | None = None) -> str:
    """The PSK file text holding ``keys``, with an optional ``#`` comment on top."""
    lines = [f"# {c}".rstrip() for c in comment.splitlines()] if comment else []
    for identity, key in keys.items():
        lines.append(f"{checkIdentity(identity)}:{checkKey(key).hex()}")
    return "\n".join(lines) + "\n"


def writePskFile(
    path: str | os.PathLike[str], keys: Mapping[str, bytes], comment: str | None = None
) -> PskTable:
    """Create a PSK file with mode 0600 holding ``keys``; never replace an existing file.

    The file appears complete or not at all. Raises FileExistsError if ``path`` exists.
    """
    name = Path(path)
    table = PskTable(keys, os.fspath(name))
    text = formatPskText(table, comment).encode("utf-8")
    temporary = name.with_name(f".{name.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, name)
    finally:
        os.unlink(temporary)
    return table


def createPskFile(
    path: str | os.PathLike[str], identity: str, bits: int = DEFAULT_KEY_BITS
) -> PskTable:
    """Create a PSK file (mode 0600) with one random key for ``identity``.

    The ENRP server calls this at its first start; raises FileExistsError if ``path`` exists.
    """
    return writePskFile(
        path,
        {identity: generateKey(bits)},
        comment=(
            "Pre-shared keys for twisted-rserpool: one 'identity:hexkey' per line.\n"
            "Keep this file secret (mode 0600); give each pool element its own identity."
        ),
    )
