"""Member times and listing order, read by the tools photographers use, over real HTTP.

Times: every member has a DOS time (UTC) and the Info-ZIP extended timestamp (0x5455), so unzip,
zipinfo and bsdtar show the same instant converted to the reader's zone (checked with TZ set to
New York and Tokyo), and Python's zipfile shows the UTC time. Order: the photos stream as they
complete (the first is made slowest here), but the central directory, which unzip, zipinfo, Python
and file managers list from, is in the photographer's order: set, then sequence (bsdtar lists by
position in the file). A cut stream resumes byte-identical.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from simulator import Fault, SeedImage
from tests.conftest import Service, Sim
from tests.support.zipcheck import check_zip

NAMES = ("front.jpg", "kitchen.jpg", "bath.jpg", "garden.jpg")
ZONES = ("America/New_York", "Asia/Tokyo", "UTC")


def _slow_first_order(sim: Sim) -> tuple[str, list[str]]:
    order = sim.state.seed_order(name="9 Elm Road", images=[SeedImage(name=n, size=60_000) for n in NAMES])
    ids = [str(image["image_id"]) for image in order["images"]]
    sim.state.add_fault(Fault(kind="latency", image_id=ids[0], seconds=1.0))  # streamed last, listed first
    sim.state.add_fault(Fault(kind="latency", image_id=ids[1], seconds=0.5))
    return str(order["order_id"]), ids


def _extended_time(archive: bytes, info: zipfile.ZipInfo) -> int:
    """The 0x5455 mtime of a member, from its central directory extra field."""
    extra = info.extra
    while extra:
        tag, size = struct.unpack_from("<HH", extra)
        if tag == 0x5455:
            flags, mtime = struct.unpack_from("<BI", extra, 4)
            assert flags & 1
            return int(mtime)
        extra = extra[4 + size :]
    raise AssertionError(f"{info.filename} has no extended timestamp")


def _run(tool: list[str], zone: str) -> str:
    result = subprocess.run(tool, capture_output=True, text=True, check=True, env={**os.environ, "TZ": zone})
    return result.stdout


def test_times_show_right_in_every_zone_and_the_listing_follows_the_photographers_order(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = _slow_first_order(simulator)
    params = {"sets": "full,original", "names": "sequence"}
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params=params)
    assert response.status_code == 200
    archive = response.content
    check_zip(archive)
    path = tmp_path / "listing.zip"
    path.write_bytes(archive)

    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        infos = zf.infolist()
    photos = [f"{n:02d} - {name}" for n, name in enumerate(NAMES, start=1)]
    expected = [f"full/{p}" for p in photos] + [f"original/{p}" for p in photos] + ["_manifest.json"]
    assert [i.filename for i in infos] == expected  # the central directory: set, then sequence
    offsets = {i.filename: i.header_offset for i in infos}
    assert offsets["full/01 - front.jpg"] > offsets["full/03 - bath.jpg"]  # streamed as completed, not listed so

    stamp = _extended_time(archive, infos[0])
    when = datetime.fromtimestamp(stamp, UTC)
    assert abs(when.timestamp() - datetime.now(UTC).timestamp()) < 120
    assert {_extended_time(archive, i) for i in infos} == {stamp}
    assert {i.date_time for i in infos} == {when.timetuple()[:6]}  # Python: the DOS time, in UTC

    for zone in ZONES:
        local = when.astimezone(ZoneInfo(zone))
        unzip = _run(["unzip", "-l", str(path)], zone)
        assert re.findall(r"^\s*\d+\s+(\S+ \d\d:\d\d)\s+(.+)$", unzip, re.M)[: len(expected)] == [
            (local.strftime("%Y-%m-%d %H:%M"), name) for name in expected
        ], (zone, unzip)
        zipinfo = _run(["zipinfo", "-T", str(path)], zone)
        assert {m for m in re.findall(r" (\d{8}\.\d{6}) ", zipinfo)} == {local.strftime("%Y%m%d.%H%M%S")}, zipinfo
        bsdtar = _run(["bsdtar", "-tvf", str(path)], zone)
        shown = local.strftime("%b ") + f"{local.day:2d}" + local.strftime(" %H:%M")
        listed = [line for line in bsdtar.splitlines() if line.strip()]
        # bsdtar lists by position in the file (stream order), not by the central directory: only the times here
        assert sorted(line.split(shown, 1)[1].strip() for line in listed) == sorted(expected), (zone, bsdtar)


@pytest.mark.parametrize("cut_at", [0.3, 0.9])
def test_a_cut_stream_listed_in_plan_order_resumes_byte_identical(
    simulator: Sim, start_service: Callable[..., Service], cut_at: float
) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = _slow_first_order(simulator)
    url = f"/orders/{order_id}/images"
    params = {"names": "sequence"}
    got = bytearray()
    with service.client() as client, client.stream("GET", url, params=params) as response:
        etag = response.headers["etag"]
        for chunk in response.iter_raw(4096):
            got += chunk
            if len(got) >= int(cut_at * 4 * 60_000):
                break
    prefix = bytes(got)
    with service.client() as client:
        rest = client.get(url, params=params, headers={"Range": f"bytes={len(prefix)}-", "If-Range": etag})
        whole = client.get(url, params=params, headers={"Range": "bytes=0-", "If-Range": etag})
    assert rest.status_code == 206 and whole.status_code == 206, rest.text
    assert prefix + rest.content == whole.content
    with zipfile.ZipFile(io.BytesIO(whole.content)) as zf:
        assert zf.namelist()[:4] == [f"{n:02d} - {name}" for n, name in enumerate(NAMES, start=1)]
    check_zip(whole.content)


def test_a_job_archive_is_listed_in_plan_order_too(simulator: Sim, service: Service) -> None:
    from tests.support.jobs_helpers import poll

    order_id, _ = _slow_first_order(simulator)
    with service.client() as client:
        job_id = client.post(f"/orders/{order_id}/jobs", params={"names": "sequence"}).json()["job_id"]
        poll(client, job_id, lambda s: s["status"] == "completed")
        archive = client.get(f"/jobs/{job_id}/download").content
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.namelist() == [f"{n:02d} - {name}" for n, name in enumerate(NAMES, start=1)] + ["_manifest.json"]
        assert zf.infolist()[0].header_offset > zf.infolist()[2].header_offset
