"""PSK files: the format, every refusal, and the writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from twisted_rserpool.security.psk import (
    DEFAULT_KEY_BITS,
    MAX_IDENTITY_BYTES,
    PskFileError,
    PskTable,
    checkIdentity,
    createPskFile,
    formatPskText,
    generateKey,
    loadPskFile,
    parsePskText,
    writePskFile,
)

KEY16 = "00112233445566778899aabbccddeeff"
KEY32 = KEY16 * 2


def writeFile(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    """Write ``text`` to ``path`` with ``mode``."""
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def test_parsesEntriesCommentsAndBlankLines() -> None:
    """Comments, blank lines and surrounding whitespace are ignored; keys are hex of any
    case; each identity maps to its key."""
    table = parsePskText(
        f"# pool elements\n\npe-17:{KEY16}\n   # indented comment\n  enrp-2:{KEY32.upper()}  \n"
    )
    assert dict(table) == {"pe-17": bytes.fromhex(KEY16), "enrp-2": bytes.fromhex(KEY32)}
    assert len(table) == 2


def test_identityIsEverythingBeforeTheLastColon() -> None:
    """An identity may contain colons; the key follows the last one."""
    table = parsePskText(f"urn:rserpool:pe:17:{KEY16}\n")
    assert list(table) == ["urn:rserpool:pe:17"]


def test_utf8Identity() -> None:
    """Identities are UTF-8 strings (RFC 4279 section 5.1)."""
    assert list(parsePskText(f"pé-17:{KEY16}\n")) == ["pé-17"]


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        (f"pe-17 {KEY16}\n", "expected 'identity:hexkey'", 1),
        (f"# c\n:{KEY16}\n", "identity is empty", 2),
        (f"pe-17:{KEY16[:-2]}\n", "120 bits long; at least 128", 1),
        ("pe-17:\n", "not hex digits", 1),
        (f"pe-17:{KEY16}0\n", "odd number of hex digits", 1),
        (f"pe-17:{KEY16[:-1]}g\n", "not hex digits", 1),
        (f"pe-17:{KEY16[:8]} {KEY16[8:]}ab\n", "not hex digits", 1),
        (f"pe-17:{'ab' * 257}\n", "at most 2048 bits", 1),
        (f"pe-17:{KEY16}\npe-18:{KEY16}\npe-17:{KEY32}\n", "duplicate identity 'pe-17'", 3),
        (f"pe\x0717:{KEY16}\n", "control character", 1),
        (f"{'x' * (MAX_IDENTITY_BYTES + 1)}:{KEY16}\n", "at most 128 allowed", 1),
        ("# only a comment\n\n", "no keys", None),
        ("", "no keys", None),
    ],
)
def test_refusals(text: str, message: str, line: int | None) -> None:
    """Each malformed file is refused with the line and the reason."""
    with pytest.raises(PskFileError) as caught:
        parsePskText(text, "keys.psk")
    assert message in str(caught.value)
    assert caught.value.line == line
    assert caught.value.path == "keys.psk"
    prefix = "keys.psk" if line is None else f"keys.psk line {line}"
    assert str(caught.value).startswith(prefix + ": ")


def test_duplicateNamesFirstLine() -> None:
    """A duplicate identity's error points at the first occurrence too."""
    with pytest.raises(PskFileError, match=r"line 4: duplicate identity 'a' \(first on line 2\)"):
        parsePskText(f"\na:{KEY16}\nb:{KEY16}\na:{KEY16}\n", "keys.psk")


def test_errorIsValueError() -> None:
    """PskFileError is a ValueError, so endpoint string parsing reports it as one."""
    assert issubclass(PskFileError, ValueError)


def test_keysNeverInRepr() -> None:
    """A table's repr names its identities and file, never a key."""
    table = parsePskText(f"pe-17:{KEY16}\n", "keys.psk")
    assert KEY16 not in repr(table)
    assert "pe-17" in repr(table)


def test_loadOwnerOnlyFile(tmp_path: Path) -> None:
    """A file only its owner may read loads."""
    path = writeFile(tmp_path / "keys.psk", f"pe-17:{KEY16}\n", 0o600)
    table = loadPskFile(path)
    assert table["pe-17"] == bytes.fromhex(KEY16)
    assert table.path == str(path)
    assert loadPskFile(writeFile(tmp_path / "ro.psk", f"pe-17:{KEY16}\n", 0o400))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o610, 0o601, 0o666])
def test_refusesFileOthersMayAccess(tmp_path: Path, mode: int) -> None:
    """A file readable (or writable, or executable) by group or others is refused with
    an error naming the file and its mode."""
    path = writeFile(tmp_path / "keys.psk", f"pe-17:{KEY16}\n", mode)
    with pytest.raises(PskFileError) as caught:
        loadPskFile(path)
    text = str(caught.value)
    assert str(path) in text
    assert f"mode {mode:04o}" in text
    assert "chmod 600" in text


def test_refusesDirectory(tmp_path: Path) -> None:
    """A directory is not a PSK file."""
    directory = tmp_path / "keys.psk"
    directory.mkdir(mode=0o700)
    with pytest.raises((PskFileError, IsADirectoryError)):
        loadPskFile(directory)


def test_missingFile(tmp_path: Path) -> None:
    """A missing file raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        loadPskFile(tmp_path / "absent.psk")


def test_refusesNonUtf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused."""
    path = writeFile(tmp_path / "keys.psk", b"pe-\xff:" + KEY16.encode() + b"\n")
    with pytest.raises(PskFileError, match="not UTF-8"):
        loadPskFile(path)


def test_refusesHugeFile(tmp_path: Path) -> None:
    """A file larger than a megabyte is refused without parsing it."""
    path = writeFile(tmp_path / "keys.psk", b"#" * (1 << 20) + b"\n")
    with pytest.raises(PskFileError, match="larger than"):
        loadPskFile(path)


def test_malformedContentNamesFile(tmp_path: Path) -> None:
    """A content error read from a file names that file."""
    path = writeFile(tmp_path / "keys.psk", f"pe-17:{KEY16[:4]}\n")
    with pytest.raises(PskFileError, match=rf"^{path} line 1: 'pe-17': PSK is 16 bits long"):
        loadPskFile(path)


def test_writerCreatesOwnerOnlyFile(tmp_path: Path) -> None:
    """The writer creates a mode 0600 file that loads back to the same keys, even under
    a permissive umask, and leaves no temporary file behind."""
    keys = {"pe-17": bytes.fromhex(KEY16), "urn:enrp:2": bytes.fromhex(KEY32)}
    old = os.umask(0)
    try:
        table = writePskFile(tmp_path / "keys.psk", keys, comment="two keys\nsecond line")
    finally:
        os.umask(old)
    path = tmp_path / "keys.psk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dict(loadPskFile(path)) == keys == dict(table)
    assert path.read_text().startswith("# two keys\n# second line\n")
    assert os.listdir(tmp_path) == ["keys.psk"]


def test_writerNeverReplaces(tmp_path: Path) -> None:
    """The writer refuses to replace an existing file and leaves it untouched."""
    path = writeFile(tmp_path / "keys.psk", f"pe-17:{KEY16}\n")
    with pytest.raises(FileExistsError):
        writePskFile(path, {"pe-18": bytes.fromhex(KEY32)})
    assert dict(loadPskFile(path)) == {"pe-17": bytes.fromhex(KEY16)}
    assert os.listdir(tmp_path) == ["keys.psk"]


def test_writerRefusesBadKeys(tmp_path: Path) -> None:
    """The writer checks keys and identities before creating anything."""
    with pytest.raises(ValueError, match="at least 128 bits"):
        writePskFile(tmp_path / "keys.psk", {"pe-17": b"short"})
    with pytest.raises(ValueError, match="empty"):
        writePskFile(tmp_path / "keys.psk", {"": bytes(16)})
    assert os.listdir(tmp_path) == []


def test_createPskFile(tmp_path: Path) -> None:
    """createPskFile makes a 0600 file with one random key of the default size; two
    files get different keys."""
    first = createPskFile(tmp_path / "a.psk", "enrp-1")
    second = createPskFile(tmp_path / "b.psk", "enrp-1")
    assert len(first["enrp-1"]) * 8 == DEFAULT_KEY_BITS
    assert first["enrp-1"] != second["enrp-1"]
    assert stat.S_IMODE((tmp_path / "a.psk").stat().st_mode) == 0o600
    assert dict(loadPskFile(tmp_path / "a.psk")) == dict(first)
    assert (tmp_path / "a.psk").read_text().startswith("# ")


def test_generateKey() -> None:
    """Keys are random and of the size asked; sizes below 128 bits are refused."""
    assert len(generateKey(128)) == 16
    assert generateKey() != generateKey()
    with pytest.raises(ValueError):
        generateKey(64)
    with pytest.raises(ValueError):
        generateKey(130)


def test_tableChecksItsKeys() -> None:
    """A PskTable built in code obeys the same rules as a file."""
    with pytest.raises(ValueError):
        PskTable({"pe-17": b"short"})
    with pytest.raises(ValueError):
        PskTable({" pe-17": bytes(16)})


def test_formatRoundTrip() -> None:
    """formatPskText's output parses back to the same table."""
    keys = {"a": bytes(range(16)), "b:c": bytes(range(32))}
    assert dict(parsePskText(formatPskText(keys))) == keys


def test_checkIdentity() -> None:
    """Identities with whitespace at either end are refused; inner spaces are fine."""
    assert checkIdentity("pool element 17") == "pool element 17"
    with pytest.raises(ValueError):
        checkIdentity("pe-17 ")
