"""Audit the pinned requirements for known vulnerabilities: pip-audit when its database answers, else the
package registry's own vulnerability data.

    python tools/audit.py requirements.txt requirements-dev.txt

1. When OSV (pip-audit's database) is reachable, run `pip-audit --strict` on every requirements file:
   its verdict is final.
2. When it is not (this build machine reaches the package registry and nothing else), use the same
   data pip-audit's "pypi" service reads: the `vulnerabilities` of the registry's JSON API. Where the
   registry serves the per-version document (`/pypi/<name>/<version>/json`) that is exactly it; where
   it serves only the latest release (`/pypi/<name>/json`), that document lists the advisories that
   affect the latest release, which is the pinned one whenever the pin is up to date. A pin that is
   not the latest cannot be checked this way: it is listed as unverified (a warning, not a failure;
   `make lock` usually moves it to the latest).
Exit status 1 when any pinned package has a known, not withdrawn, vulnerability.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx


def _registry() -> str:
    """The JSON API of the default package index, as pip itself knows it (no host name written here)."""
    from pip._internal.models.index import PyPI

    return str(PyPI.pypi_url).rstrip("/")


OSV_HOST = "api.osv.dev"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def pins(files: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in files:
        for line in Path(name).read_text().splitlines():
            if match := PIN.match(line.strip()):
                found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def osv_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((OSV_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def run_pip_audit(files: list[str]) -> int:
    status = 0
    for name in files:
        cmd = [sys.executable, "-m", "pip_audit", "-r", name, "--no-deps", "--disable-pip", "--strict",
               "--vulnerability-service", "osv", "--progress-spinner", "off"]
        status |= subprocess.run(cmd, check=False).returncode  # noqa: S603 - fixed argv, our own files
    return status


def registry_check(client: httpx.Client, name: str, version: str) -> tuple[str, list[dict[str, Any]], str | None]:
    """(how it was checked, live advisories, note)."""
    registry = _registry()
    response = client.get(f"{registry}/{name}/{version}/json")
    if response.status_code == 200:
        return "per-version", _live(response.json()), None
    response = client.get(f"{registry}/{name}/json")
    response.raise_for_status()
    data = response.json()
    latest = data["info"]["version"]
    files = data.get("releases", {}).get(version) or []
    if files and all(f.get("yanked") for f in files):
        return "latest", [], f"pinned {version} was yanked"
    if latest != version:
        return "unverified", [], f"pinned {version}, latest {latest}: the registry here serves advisories for the latest only"
    return "latest", _live(data), None


def _live(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in document.get("vulnerabilities") or [] if not v.get("withdrawn")]


def registry_audit(found: dict[str, str]) -> int:
    with httpx.Client(timeout=30, headers={"user-agent": "autoenhance-batch-audit"}) as client, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda item: (item, registry_check(client, *item)), sorted(found.items())))
    vulnerable = 0
    unverified = []
    for (name, version), (how, advisories, note) in results:
        for advisory in advisories:
            vulnerable += 1
            fixed = ", ".join(advisory.get("fixed_in") or []) or "no fix yet"
            print(f"VULNERABLE {name}=={version}: {advisory.get('id')} ({', '.join(advisory.get('aliases') or [])}); fixed in {fixed}")
        if note and how == "unverified":
            unverified.append(f"{name}: {note}")
        elif note:
            print(f"WARNING {name}: {note}")
    checked = sum(1 for _, (how, _, _) in results if how != "unverified")
    print(f"audit (registry data; OSV unreachable): {checked} of {len(results)} pinned packages checked, "
          f"{vulnerable} known vulnerabilities")
    for line in unverified:
        print(f"UNVERIFIED {line}")
    return 1 if vulnerable else 0


def main() -> None:
    files = sys.argv[1:] or ["requirements.txt", "requirements-dev.txt"]
    if osv_reachable():
        sys.exit(run_pip_audit(files))
    sys.exit(registry_audit(pins(files)))


if __name__ == "__main__":
    main()
