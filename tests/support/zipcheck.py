"""Read an archive with three independent readers: Python's zipfile, Info-ZIP `unzip -t`, bsdtar."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest


def _tool(name: str) -> str | None:
    path = shutil.which(name)
    if path is None and os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required under CI (make test installs it)")
    return path


def check_zip(data: bytes) -> dict[str, bytes]:
    """Assert the archive is valid for every reader; return {member name: bytes}."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        members = {info.filename: zf.read(info) for info in zf.infolist()}
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, f"{info.filename} was recompressed"
            if not info.filename.isascii():
                assert info.flag_bits & 0x800, f"{info.filename} lacks the UTF-8 flag"
    with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
        tmp.write(data)
        tmp.flush()
        if unzip := _tool("unzip"):
            result = subprocess.run([unzip, "-t", tmp.name], capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "No errors detected" in result.stdout
        if bsdtar := _tool("bsdtar"):
            result = subprocess.run([bsdtar, "-tf", tmp.name], capture_output=True, check=False)
            assert result.returncode == 0, result.stderr
            listed = sorted(result.stdout.decode("utf-8").splitlines())
            assert listed == sorted(members)
    return members


def extract_zip(data: bytes, into: Path) -> dict[str, dict[str, bytes]]:
    """Extract the archive to disk with each reader (zipfile, Info-ZIP `unzip`, bsdtar), each into its
    own folder under `into`; {reader: {relative path: bytes}} of what landed, for comparison.

    Listing and testing read names from the archive only; writing them is where a file system refuses
    one (a component over 255 bytes: ENAMETOOLONG)."""
    archive = into / "archive.zip"
    archive.write_bytes(data)
    env = os.environ | {"LC_ALL": "C.UTF-8"}  # extractors decode UTF-8 names by the locale
    runs: dict[str, list[str] | None] = {"zipfile": None}
    if unzip := _tool("unzip"):
        runs["unzip"] = [unzip, "-q", str(archive), "-d"]
    if bsdtar := _tool("bsdtar"):
        runs["bsdtar"] = [bsdtar, "-xf", str(archive), "-C"]
    landed: dict[str, dict[str, bytes]] = {}
    for reader, command in runs.items():
        folder = into / reader
        folder.mkdir()
        if command is None:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(folder)
        else:
            result = subprocess.run([*command, str(folder)], capture_output=True, check=False, env=env)
            assert result.returncode == 0, f"{reader}: {result.stderr.decode(errors='replace')}"
        landed[reader] = {
            path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
        }
    return landed
