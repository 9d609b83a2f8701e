"""The lock: write it from an environment, or say how an environment differs from it.

Run by the Python of the environment in question (standard library only)::

    .venv-lock/bin/python requirements/pins.py freeze --twin onnxruntime=onnxruntime-gpu
    .venv-latest/bin/python requirements/pins.py compare requirements/constraints.txt

``freeze`` prints one ``name==version`` line per installed distribution, the installers
(pip, setuptools, wheel) and the project itself left out, local version labels dropped
(``torch==2.13.0+cpu`` is locked as ``torch==2.13.0``, which the CPU and the CUDA wheels
both satisfy). ``--twin A=B`` also pins B, a package that cannot be installed beside A,
at A's version when that release of B installs here (else at B's newest that does), so
the lock serves either one. ``compare`` lists the installed versions that differ from the
lock; it never fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

#: Installers, and the project: never locked.
UNLOCKED = frozenset({"pip", "setuptools", "wheel", "ranp-onnx"})


def canonical(name: str) -> str:
    """Return the normalised project name (PEP 503): lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """Return a version without its local label: ``2.13.0+cpu`` -> ``2.13.0``."""
    return version.split("+", 1)[0]


def installed() -> dict[str, str]:
    """Return the installed distributions of this interpreter, by canonical name."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) not in UNLOCKED:
            found[canonical(name)] = public(dist.version)
    return found


def read_lock(path: Path) -> dict[str, str]:
    """Return the ``name==version`` pins of a constraints file, by canonical name."""
    pins = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def twin_version(package: str, wanted: str) -> str | None:
    """Return the version of ``package`` that pip would install here.

    ``wanted`` if that release installs on this platform, else the newest that does; None
    if none does. Nothing is installed (``pip install --dry-run``, without dependencies).
    """
    for requirement in (f"{package}=={wanted}", package):
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps"]
        command += ["--ignore-installed", "--report", "-", requirement]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            report = json.loads(done.stdout)
            return str(report["install"][0]["metadata"]["version"])
    return None


def freeze(twins: Sequence[str]) -> str:
    """Return the lock text for this environment (see the module docstring)."""
    pins = installed()
    notes = []
    for twin in twins:
        source, _, package = twin.partition("=")
        version = pins.get(canonical(source))
        if version is None:
            raise SystemExit(f"--twin {twin}: {source} is not installed")
        found = twin_version(package, version)
        if found is None:
            notes.append(f"# {package}: no release installs here; not locked")
            continue
        pins[canonical(package)] = found
        if found != version:
            notes.append(f"# {package}: {version} does not install here; locked at {found}")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    header = [
        "# The versions `make test` passed with: `make setup` installs exactly these.",
        "# Written by `make lock` (the newest releases, resolved in a fresh venv, frozen);",
        "# do not edit by hand. `make test-latest` says which newer releases differ.",
        f"# Resolved on Python {python}, {platform.system()} {platform.machine()}.",
        *notes,
    ]
    return "\n".join([*header, *(f"{name}=={pins[name]}" for name in sorted(pins))]) + "\n"


def compare(lock: Path) -> str:
    """Return a report of the installed versions that differ from the lock."""
    pins = read_lock(lock)
    rows = []
    for name, version in sorted(installed().items()):
        locked = pins.get(name)
        if locked != version:
            rows.append((name, locked or "(not locked)", version))
    if not rows:
        return f"Every installed package is at its version in {lock}."
    width = max(len(row[0]) for row in rows)
    lines = [f"{len(rows)} installed package(s) differ from {lock}:"]
    lines += [f"  {name:<{width}}  {locked:>14} -> {version}" for name, locked, version in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``freeze`` or ``compare``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    freezing = commands.add_parser("freeze", help="print the lock of this environment")
    freezing.add_argument("--twin", action="append", default=[], metavar="A=B")
    comparing = commands.add_parser("compare", help="list the versions that differ from LOCK")
    comparing.add_argument("lock", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "freeze":
        sys.stdout.write(freeze(arguments.twin))
    else:
        print(compare(arguments.lock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
