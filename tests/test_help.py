"""``--help`` of every command keeps example strings whole (issue 15, finding 11)."""

from __future__ import annotations

import re

import pytest
from twisted.python import usage

from twisted_rserpool._tap import commandOptions, enrp, poolmember, vpngw

COMMANDS: dict[str, type[usage.Options]] = {
    "enrp": enrp.Options,
    "vpngw": vpngw.Options,
    "poolmember": poolmember.Options,
}

#: Endpoint strings, paths and other words the help must not split across lines.
WORD = re.compile(r"\S*[:/=.-]\S*")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_keeps_examples_whole(command: str) -> None:
    options = commandOptions(command, COMMANDS[command])()
    text = options.getUsage(width=80)
    words = " ".join(text.split()).split(" ")
    for doc in options.docs.values():
        for word in WORD.findall(" ".join(doc.split())):
            assert word in words, f"{word!r} is split in twistd {command} --help"
    assert "[default: ]" not in text
    helpColumn = [line[41:] for line in text.splitlines() if line.startswith(" " * 41)]
    assert not [line for line in helpColumn if "  " in line.strip()], "runs of spaces"


def test_help_shows_real_defaults() -> None:
    options = commandOptions("enrp", COMMANDS["enrp"])()
    text = options.getUsage(width=80)
    assert "[default: 2]" in text
    # The docs and defaults the parser uses are left as they were.
    assert options.defaults["announce-interface"] == ""
