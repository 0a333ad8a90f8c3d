"""Member names are safe and unique however hostile the upstream names are."""

from __future__ import annotations

import pytest

from app.core.naming import REPORT_NAME, NameAllocator, content_disposition, safe_stem


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
