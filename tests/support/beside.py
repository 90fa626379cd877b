"""Run a program beside long-running servers, in a network namespace of its own.

``python beside.py [--beside COMMAND --ready REGEX]... -- PROGRAM [ARGUMENT...]``, started
inside ``unshare --net`` (a fresh namespace whose only interface is loopback): brings
loopback up, starts each COMMAND in the current directory in turn and waits until its
output matches REGEX, runs PROGRAM, then stops the commands. The exit status is PROGRAM's;
a command that ends or never gets ready exits with status 3 and its output on stderr.

The servers the documentation tells a reader to start (``twistd -n enrp`` on its default
port 3864, a pool element of one's own) run as written, without meeting other tests' servers.
The directory of this Python interpreter comes first on ``PATH`` (``twistd``, ``rserpool``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_SECONDS = 30.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beside", action="append", default=[])
    parser.add_argument("--ready", action="append", default=[])
    parser.add_argument("program", nargs=argparse.REMAINDER)
    arguments = parser.parse_args()
    program = [a for a in arguments.program if a != "--"] if arguments.program else []
    if len(arguments.beside) != len(arguments.ready) or not program:
        parser.error("give a --ready per --beside, then -- PROGRAM")
    environment = dict(os.environ)
    environment["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), environment.get("PATH", "")]
    )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for number, (command, ready) in enumerate(
            zip(arguments.beside, arguments.ready, strict=True)
        ):
            log = Path(f".beside-{number}.log")
            with log.open("wb") as output:
                process = subprocess.Popen(
                    shlex.split(command),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    start_new_session=True,
                )
            running.append((command, process, log))
            deadline = time.monotonic() + READY_SECONDS
            while not re.search(ready, log.read_text(errors="replace")):
                if process.poll() is not None or time.monotonic() > deadline:
                    state = "ended" if process.poll() is not None else "is not ready"
                    sys.stderr.write(f"{command!r} {state}:\n{log.read_text(errors='replace')}")
                    return 3
                time.sleep(0.05)
        return subprocess.run(program, env=environment, check=False).returncode
    finally:
        for command, process, log in reversed(running):
            _stop(process)
            sys.stderr.write(f"--- {command}:\n{log.read_text(errors='replace')}")


if __name__ == "__main__":
    sys.exit(main())
