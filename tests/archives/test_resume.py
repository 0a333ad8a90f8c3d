"""Resumable streamed ZIPs: cut for real, resumed with curl and If-Range, over real HTTP to the simulator.

The proof that a resume is honest: the cut part plus the resumed part is byte-identical to an
uninterrupted download of the same layout (a `Range: bytes=0-` replay of it), valid for zipfile,
`unzip -t` and bsdtar, and the simulator's per-image counters show what was fetched again.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from simulator import Fault, SeedImage
from tests.conftest import Service, Sim
from tests.support.spools import open_spool_files
from tests.support.zipcheck import check_zip

SIZES = (150_000, 90_000, 120_000, 60_000)


def seed_order(sim: Sim) -> tuple[str, list[str]]:
    order = sim.state.seed_order(name="Resume Lane", images=[SeedImage(name=f"{i}.jpg", size=s) for i, s in enumerate(SIZES)])
    return str(order["order_id"]), [img["image_id"] for img in order["images"]]


def cut_stream(service: Service, order_id: str, keep: int | Callable[[bytes], int]) -> tuple[bytes, str]:
    """Read a streamed archive up to `keep` bytes (or `keep(first 64 bytes)`), then hang up."""
    got = bytearray()
    with service.client() as client, client.stream("GET", f"/orders/{order_id}/images") as response:
        assert response.status_code == 200 and response.headers["accept-ranges"] == "bytes"
        etag = response.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert "content-length" not in response.headers  # not known before the first byte
        for chunk in response.iter_raw(4096):
            got += chunk
            if callable(keep) and len(got) >= 64:
                keep = keep(bytes(got[:64]))
            if not callable(keep) and len(got) >= keep:
                break
    assert not callable(keep)
    _settled(service)
    return bytes(got[:keep]), etag


def _settled(service: Service, timeout: float = 15.0) -> None:
    """Until the cut stream's batch has closed: downloads it started ahead of its reader (the slot is
    freed once a file is spooled) may still land after the hang-up, and would be counted as the
    resume's own fetches."""
    deadline = time.monotonic() + timeout
    with service.client() as client:
        while True:
            downloads = client.get("/api/stats").json()["downloads"]
            if downloads["active_batches"] == 0 and downloads["in_flight"] == 0:
                return
            assert time.monotonic() < deadline, f"the cut stream's batch never closed: {downloads}"
            time.sleep(0.02)


def resume(service: Service, order_id: str, have: int, if_range: str | None) -> httpx.Response:
    headers = {"Range": f"bytes={have}-"}
    if if_range is not None:
        headers["If-Range"] = if_range
    with service.client() as client:
        return client.get(f"/orders/{order_id}/images", headers=headers)


def member_end(prefix: bytes, offset: int) -> int:
    """Where the member whose local header starts at `offset` ends (read from the header itself)."""
    _, _, _, _, _, _, _, _, size, name_len, extra_len = struct.unpack_from("<IHHHHHIIIHH", prefix, offset)
    return offset + 30 + name_len + extra_len + size


def replay_whole(service: Service, order_id: str, etag: str) -> bytes:
    whole = resume(service, order_id, 0, etag)
    assert whole.status_code == 206
    total = int(whole.headers["content-range"].rsplit("/", 1)[1])
    assert whole.headers["content-range"] == f"bytes 0-{total - 1}/{total}"
    assert int(whole.headers["content-length"]) == total == len(whole.content)
    return whole.content


@pytest.mark.parametrize("where", ["local header", "member data"])
def test_a_cut_stream_resumes_byte_identical_with_only_the_needed_images_fetched(
    simulator: Sim, service: Service, where: str
) -> None:
    order_id, ids = seed_order(simulator)
    # the last image is slow the first time, so the cut lands while the layout is still incomplete
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=1.5, times=1))

    def where_to_cut(head: bytes) -> int:
        end = member_end(head, 0)
        return end + 12 if where == "local header" else end // 2

    prefix, etag = cut_stream(service, order_id, where_to_cut)
    keep = len(prefix)
    simulator.state.assets_served.clear()

    response = resume(service, order_id, keep, etag)
    assert response.status_code == 206, response.text
    total = int(response.headers["content-range"].rsplit("/", 1)[1])
    assert response.headers["content-range"] == f"bytes {keep}-{total - 1}/{total}"
    assert int(response.headers["content-length"]) == total - keep == len(response.content)
    assert response.headers["etag"] == etag
    archive = prefix + response.content
    members = check_zip(archive)
    assert sorted(members) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "_manifest.json"]
    for image_id, name in zip(ids, ["0.jpg", "1.jpg", "2.jpg", "3.jpg"], strict=True):
        assert members[name] == simulator.state.synthetic_bytes(image_id)
    # exactly the images that end after the cut were fetched again (the one straddling it, those
    # after it, and those never sent before the cut), each once; those wholly before it were not
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        ends = {i.filename: member_end(archive, i.header_offset) for i in zf.infolist()}
    expected = {ids[int(name[0])] for name, end in ends.items() if name.endswith(".jpg") and end > keep}
    assert dict(simulator.state.assets_served) == dict.fromkeys(expected, 1)
    assert len(expected) == (len(ids) - 1 if where == "local header" else len(ids))  # cut in member 2, or 1

    simulator.state.assets_served.clear()
    assert replay_whole(service, order_id, etag) == archive  # the uninterrupted download of this layout
    assert sum(simulator.state.assets_served.values()) == len(ids)


def test_cuts_inside_the_central_directory_and_late_members_fetch_only_what_follows(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service(cache_ttl_seconds=0)  # no cached copy: the layout record alone resumes
    order_id, ids = seed_order(simulator)
    full, etag = cut_stream(service, order_id, 10**9)  # read it all: the layout is complete
    with zipfile.ZipFile(io.BytesIO(full)) as zf:
        infos = zf.infolist()
        cd_offset = zf.start_dir
    # the last image in the stream: the central directory lists members in the photographer's order,
    # not in the order they were written
    last_image = max((i for i in infos if i.filename.endswith(".jpg")), key=lambda i: i.header_offset)
    cuts = {
        "central directory": (cd_offset + 20, set()),
        "last image's data": (last_image.header_offset + 200, {ids[int(last_image.filename[0])]}),
    }
    for what, (keep, fetched) in cuts.items():
        simulator.state.assets_served.clear()
        part = tmp_path / "photos.zip"
        part.write_bytes(full[:keep])
        url = f"{service.url}/orders/{order_id}/images"
        done = subprocess.run(
            ["curl", "-sS", "--fail", "-C", "-", "-H", f"If-Range: {etag}", "-o", str(part), url],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, (what, done.stderr)
        assert part.read_bytes() == full, what
        assert set(simulator.state.assets_served) == fetched, what
    check_zip(full)
    keep = cuts["central directory"][0]
    with service.client() as client:  # an If-None-Match that does not match leaves If-Range to decide
        both = client.get(
            f"/orders/{order_id}/images", headers={"If-None-Match": '"other"', "Range": f"bytes={keep}-", "If-Range": etag}
        )
    assert both.status_code == 206 and both.content == full[keep:]


def test_changed_upstream_bytes_give_a_fresh_archive_never_a_splice(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(cache_ttl_seconds=0)  # (a cached copy would answer the range itself, correctly)
    order_id, ids = seed_order(simulator)
    full, etag = cut_stream(service, order_id, 10**9)
    keep = 100
    with zipfile.ZipFile(io.BytesIO(full)) as zf:
        first = zf.infolist()[0]
    changed = ids[int(first.filename[0])]
    simulator.state.add_fault(Fault(kind="altered_bytes", image_id=changed, after_bytes=5000))
    response = resume(service, order_id, keep, etag)
    assert response.status_code == 200
    assert response.headers["etag"] != etag and "content-range" not in response.headers
    members = check_zip(response.content)
    original = simulator.state.synthetic_bytes(changed)
    assert members[first.filename] != original and len(members[first.filename]) == len(original)


def test_stale_weak_or_missing_if_range_gets_the_whole_archive(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(cache_ttl_seconds=0)  # a streamed archive: each GET makes a new layout
    order_id, _ = seed_order(simulator)
    other, _ = seed_order(simulator)
    full, etag = cut_stream(service, order_id, 10**9)
    _, other_etag = cut_stream(service, other, 10**9)
    for if_range in (None, '"0123456789abcdef0123456789abcdef"', f"W/{etag}", other_etag, "Tue, 01 Jan 2030 00:00:00 GMT"):
        response = resume(service, order_id, 100, if_range)
        assert response.status_code == 200, if_range
        check_zip(response.content)
    past = resume(service, order_id, len(full), etag)
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(full)}"


def test_cached_archive_has_stable_validators_304_range_and_head(simulator: Sim, service: Service) -> None:
    order_id, _ = seed_order(simulator)
    url = f"/orders/{order_id}/images"
    with service.client() as client:
        streamed = client.get(url)
        first, second = client.get(url), client.get(url)
        assert first.headers["x-cache"] == second.headers["x-cache"] == "hit"
        assert first.headers["etag"] == second.headers["etag"] == streamed.headers["etag"]
        assert first.headers["last-modified"] == second.headers["last-modified"]
        assert first.content == streamed.content and first.headers["content-length"] == str(len(first.content))
        etag = first.headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        since = first.headers["last-modified"]
        assert client.get(url, headers={"If-Modified-Since": since}).status_code == 304
        assert client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
        both = {"If-None-Match": '"other"', "If-Modified-Since": since}
        assert client.get(url, headers=both).status_code == 200  # If-None-Match decides when present
        part = client.get(url, headers={"Range": "bytes=1000-", "If-Range": etag})
        assert part.status_code == 206 and part.content == first.content[1000:]
        assert part.headers["content-range"] == f"bytes 1000-{len(first.content) - 1}/{len(first.content)}"
        simulator.state.assets_served.clear()
        head = client.head(url)
        assert head.status_code == 200 and head.content == b""
        for name in ("etag", "last-modified", "content-length", "accept-ranges", "content-type", "x-cache"):
            assert head.headers[name] == first.headers[name], name
        assert not simulator.state.assets_served


def test_head_on_an_uncached_order_downloads_no_image(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = seed_order(simulator)
    with service.client() as client:
        head = client.head(f"/orders/{order_id}/images")
        assert not simulator.state.assets_served  # HEAD fetched the order, not one image
        get = client.get(f"/orders/{order_id}/images")
        missing = client.head("/orders/0b7e5c2a-1111-4222-8333-944455556666/images")
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-disposition", "x-total-images", "accept-ranges", "x-cache"):
        assert head.headers[name] == get.headers[name], name
    assert missing.status_code == 404


def test_job_download_validators_and_head(simulator: Sim, service: Service) -> None:
    import time

    order_id, _ = seed_order(simulator)
    with service.client() as client:
        job = client.post(f"/orders/{order_id}/jobs").json()
        deadline = time.monotonic() + 20
        while client.get(job["status_url"]).json()["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        url = job["download_url"]
        first, second = client.get(url), client.get(url)
        assert first.headers["etag"] == second.headers["etag"]
        assert first.headers["last-modified"] == second.headers["last-modified"]
        etag = first.headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        part = client.get(url, headers={"Range": "bytes=10-", "If-Range": etag})
        assert part.status_code == 206 and part.content == first.content[10:]
        stale = client.get(url, headers={"Range": "bytes=10-", "If-Range": '"nope"'})
        assert stale.status_code == 200 and stale.content == first.content
        head = client.head(url)
        assert head.status_code == 200 and head.content == b""
        for name in ("etag", "last-modified", "content-length", "accept-ranges", "content-disposition"):
            assert head.headers[name] == first.headers[name], name


def test_head_on_probes_matches_get(service: Service) -> None:
    with service.client() as client:
        for path in ("/health", "/ready"):
            get, head = client.get(path), client.head(path)
            assert head.status_code == get.status_code, path
            assert head.content == b""
            assert head.headers["content-type"] == get.headers["content-type"], path


def test_a_stream_cut_on_one_instance_resumes_on_another_through_redis(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path, redis_prefix: str
) -> None:
    shared = {"redis_url": "redis://127.0.0.1:6379", "redis_key_prefix": redis_prefix, "cache_ttl_seconds": 0}
    first = start_service(data_dir=tmp_path / "a", **shared)
    second = start_service(data_dir=tmp_path / "b", **shared)
    order_id, ids = seed_order(simulator)
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=1.5, times=1))
    prefix, etag = cut_stream(first, order_id, 1000)
    assert not list((tmp_path / "a").glob("layouts/*"))  # the record is in Redis, not on a's disk
    with second.client() as client:
        head = client.head(f"/v1/orders/{order_id}/images")
        assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
    response = resume(second, order_id, len(prefix), etag)
    assert response.status_code == 206, response.text
    archive = prefix + response.content
    assert sorted(check_zip(archive)) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "_manifest.json"]
    assert replay_whole(first, order_id, etag) == archive


def test_a_caller_who_leaves_while_a_resume_prepares_cancels_its_downloads(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    import time

    service = start_service(cache_ttl_seconds=0)
    order_id, ids = seed_order(simulator)
    _, etag = cut_stream(service, order_id, 10**9)
    for image_id in ids:
        simulator.state.add_fault(Fault(kind="latency", image_id=image_id, seconds=5, times=1))
    with pytest.raises(httpx.ReadTimeout), service.client(timeout=0.5) as client:
        client.get(f"/orders/{order_id}/images", headers={"Range": "bytes=10-", "If-Range": etag})
    deadline = time.monotonic() + 3
    with service.client() as client:
        while client.get("/api/stats").json()["downloads"]["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/api/stats").json()["downloads"]["in_flight"] == 0  # well before the 5 s latency


def test_a_resume_cancelled_while_it_downloads_closes_every_spool_it_opened(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    """On disk from the first byte (SPOOL_MEMORY_BYTES=0): a spool left open would hold its file's space."""
    import threading
    import time

    service = start_service(cache_ttl_seconds=0, spool_memory_bytes=0)
    order_id, ids = seed_order(simulator)
    _, etag = cut_stream(service, order_id, 10**9)
    for image_id in ids:
        simulator.state.add_fault(Fault(kind="latency", image_id=image_id, seconds=5, times=1))
    seen, left = [0], threading.Event()

    def watch() -> None:  # the most spools open at once while the caller waits
        while not left.wait(0.01):
            seen[0] = max(seen[0], open_spool_files(service.settings.spool_dir))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(httpx.ReadTimeout), service.client(timeout=1) as client:
            client.get(f"/orders/{order_id}/images", headers={"Range": "bytes=10-", "If-Range": etag})
    finally:
        left.set()
        watcher.join()
    assert seen[0] == len(ids)  # every file the resume needs was being spooled when the caller left
    deadline = time.monotonic() + 3
    while open_spool_files(service.settings.spool_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_spool_files(service.settings.spool_dir) == 0  # well before the 5 s latency


def test_a_resume_completes_the_report_of_what_failed(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(cache_ttl_seconds=0)
    order = simulator.state.seed_order(
        name="Partial Row",
        images=[
            SeedImage(name="ok.jpg", size=120_000),
            SeedImage(name="late.jpg", size=80_000),
            SeedImage(name="busy.jpg", status="processing"),
            SeedImage(name="gone.jpg", size=50_000),
        ],
    )
    order_id, ids = str(order["order_id"]), [img["image_id"] for img in order["images"]]
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[1], seconds=1.5, times=1))
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=1.5, times=1))
    # gone.jpg: fails for good once the resume asks for it (after its first, slow, request was cut)
    prefix, etag = cut_stream(service, order_id, 500)
    simulator.state.add_fault(Fault(kind="asset_404", image_id=ids[3]))
    response = resume(service, order_id, len(prefix), etag)
    assert response.status_code == 206
    assert response.headers["x-downloaded"] == "2" and response.headers["x-failed"] == "2"
    members = check_zip(prefix + response.content)
    report = members["_download_report.txt"].decode()
    assert "busy.jpg" in report and "gone.jpg" in report
    manifest = json.loads(members["_manifest.json"])
    assert manifest["downloaded"] == 2 and manifest["failed"] == 2
    assert replay_whole(service, order_id, etag) == prefix + response.content


def test_an_offset_past_what_a_cut_layout_records_gets_the_whole_archive(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    """A record that stopped early (say, its store failed mid-stream) must not be spliced onto."""
    service = start_service(cache_ttl_seconds=0)
    order_id, ids = seed_order(simulator)
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=1.5, times=1))
    _, etag = cut_stream(service, order_id, 500)  # the layout records 3 images, not the slow 4th
    response = resume(service, order_id, sum(SIZES), etag)  # past anything those 3 could have sent
    assert response.status_code == 200 and response.headers["etag"] != etag
    check_zip(response.content)


def test_two_resumes_of_one_cut_layout_agree_on_how_it_ends(simulator: Sim, start_service: Callable[..., Service]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    service = start_service(cache_ttl_seconds=0)
    order_id, ids = seed_order(simulator)
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=1.5, times=1))
    prefix, etag = cut_stream(service, order_id, 500)
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=0.5, times=2))  # both overlap
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: resume(service, order_id, len(prefix), etag), range(2)))
    assert [a.status_code for a in answers] == [206, 206]
    assert answers[0].content == answers[1].content
    archive = prefix + answers[0].content
    assert sorted(check_zip(archive)) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "_manifest.json"]
    assert replay_whole(service, order_id, etag) == archive  # the record holds one completion, not two


def test_a_cut_archive_of_several_delivery_sets_resumes(simulator: Sim, start_service: Callable[..., Service]) -> None:
    """A photo has a file per set (in folders): the record tells them apart by member name."""
    service = start_service(cache_ttl_seconds=0)
    order_id, ids = seed_order(simulator)
    simulator.state.add_fault(Fault(kind="latency", image_id=ids[3], seconds=1.5, times=1))
    url = f"/orders/{order_id}/images"
    params = {"sets": "full,original"}
    got = bytearray()
    with service.client() as client, client.stream("GET", url, params=params) as response:
        etag = response.headers["etag"]
        for chunk in response.iter_raw(4096):
            got += chunk
            if len(got) >= 200_000:
                break
    prefix = bytes(got[:200_000])
    with service.client() as client:
        rest = client.get(url, params=params, headers={"Range": f"bytes={len(prefix)}-", "If-Range": etag})
        whole = client.get(url, params=params, headers={"Range": "bytes=0-", "If-Range": etag})
    assert rest.status_code == 206 and whole.status_code == 206
    archive = prefix + rest.content
    assert archive == whole.content
    members = check_zip(archive)
    assert len([m for m in members if m.startswith(("full/", "original/"))]) == 2 * len(ids)
    manifest = json.loads(members["_manifest.json"])
    assert sorted({f["set"] for f in manifest["files"]}) == ["full", "original"]
