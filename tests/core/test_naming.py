"""Member names are safe and unique however hostile the upstream names are."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from app.core.naming import REPORT_NAME, NameAllocator, content_disposition, safe_stem
from simulator import SeedImage, SimulatorState
from tests.conftest import Service


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("kitchen.jpg", "kitchen"),
        ("Living Room.JPEG", "Living Room"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\bath.png", "bath"),
        ("a\x00b\x1fc", "a_b_c"),
        ("CON", "_CON"),
        ("lpt1.txt", "_lpt1.txt"),
        ("..", "img-1"),
        ("", "img-1"),
        (None, "img-1"),
        ("   .hidden.  ", "hidden"),
        ('what?<>|*:"', "what_"),
        ("Küche – Süd.heic", "Küche – Süd"),
    ],
)
def test_safe_stem(raw: str | None, expected: str) -> None:
    assert safe_stem(raw, "img-1") == expected


def test_long_names_are_cut() -> None:
    assert len(safe_stem("x" * 500, "id")) == 120


def test_names_unique_case_insensitively_with_format_extension() -> None:
    names = NameAllocator()
    got = [
        names.allocate(n, f"id{i}", ".png") for i, n in enumerate(["kitchen.jpg", "Kitchen.JPG", "kitchen", None, None])
    ]
    assert got == ["kitchen.png", "Kitchen (2).png", "kitchen (3).png", "id3.png", "id4.png"]
    assert len({g.casefold() for g in got}) == len(got)


def test_report_name_is_reserved() -> None:
    names = NameAllocator()
    assert names.allocate(REPORT_NAME, "x", ".txt") != REPORT_NAME


def test_content_disposition_ascii_and_rfc5987() -> None:
    header = content_disposition("Villa Ñandú / 東京", "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c")
    assert header.startswith('attachment; filename="')
    ascii_part = header.split('filename="')[1].split('"')[0]
    assert ascii_part.isascii() and ascii_part.endswith(".zip") and "/" not in ascii_part
    assert "filename*=UTF-8''" in header
    assert "%E6%9D%B1%E4%BA%AC" in header  # 東京, percent-encoded UTF-8


def test_content_disposition_falls_back_to_order_id() -> None:
    header = content_disposition(None, "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c")
    assert 'filename="7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c.zip"' in header


class CountingSet(set[str]):
    lookups = 0

    def __contains__(self, item: object) -> bool:
        CountingSet.lookups += 1
        return super().__contains__(item)


def test_duplicate_names_are_allocated_in_linear_time() -> None:
    names = NameAllocator()
    names._taken = CountingSet(names._taken)
    CountingSet.lookups = 0
    got = [names.allocate("kitchen.jpg", f"id{i}", ".jpg") for i in range(5000)]
    assert got[:3] == ["kitchen.jpg", "kitchen (2).jpg", "kitchen (3).jpg"] and got[-1] == "kitchen (5000).jpg"
    assert len({g.casefold() for g in got}) == 5000
    assert CountingSet.lookups < 3 * 5000  # counting up from "(2)" every time: 12.5 million


def test_a_name_taken_by_another_image_is_skipped() -> None:
    names = NameAllocator()
    got = [names.allocate(n, f"id{i}", ".jpg") for i, n in enumerate(["a.jpg", "a (2).jpg", "a.jpg", "A.JPG"])]
    assert got == ["a.jpg", "a (2).jpg", "a (3).jpg", "A (4).jpg"]


def test_health_answers_while_a_huge_order_of_one_name_starts(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    """5,000 images named alike: naming them must not hold the event loop (it took 6 s)."""
    order = sim_state.seed_order(images=[SeedImage(name="kitchen.jpg", size=200) for _ in range(5000)])
    service = start_service(cache_ttl_seconds=0, rate_limit="")
    statuses: list[int] = []

    def download() -> None:
        with service.client() as client, client.stream("GET", f"/v1/orders/{order['order_id']}/images") as zip_:
            statuses.append(zip_.status_code)  # headers come once names are allocated and an image is in

    downloader = threading.Thread(target=download)
    slowest = 0.0
    with service.client() as client:
        downloader.start()
        deadline = time.monotonic() + 20
        while not statuses and time.monotonic() < deadline:
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.05)
    downloader.join(30)
    assert statuses == [200]
    assert slowest < 2.0, f"/health took {slowest:.1f} s while the order started"
