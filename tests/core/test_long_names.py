"""Member names fit what file systems store: at most 255 UTF-8 bytes per path component.

120 CJK characters are 360 bytes and 120 emoji 480: within the 120-character stem limit, yet no
extractor could write such a file (ENAMETOOLONG). Names are cut on a character boundary, keeping
the sequence prefix, the extension and uniqueness.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from app.core.naming import MAX_NAME_BYTES, NameAllocator, content_disposition, fit_bytes
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.zipcheck import check_zip, extract_zip

CJK = "東" * 120  # 360 bytes
EMOJI = "\U0001f600" * 120  # 480 bytes
FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467" * 40  # ZWJ sequences, 720 bytes
MIXED = "a" + "\U0001f600" * 100  # a cut at 251 bytes falls inside an emoji


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


@pytest.mark.parametrize("stem", [CJK, EMOJI, FAMILY, MIXED], ids=["cjk", "emoji", "zwj", "mixed"])
@pytest.mark.parametrize("prefix", ["", "001 - "])
def test_names_fit_255_bytes_keeping_prefix_extension_and_uniqueness(stem: str, prefix: str) -> None:
    names = NameAllocator()
    got = [names.allocate(f"{stem}.jpg", f"id{i}", ".webp", prefix) for i in range(12)]
    assert len({name.casefold() for name in got}) == 12
    for number, name in enumerate(got, start=1):
        assert utf8(name) <= MAX_NAME_BYTES
        assert utf8(name) > MAX_NAME_BYTES - 8  # cut where it had to be, not far before
        assert name.startswith(prefix) and name.endswith(f" ({number}).webp" if number > 1 else ".webp")
        kept = name.removeprefix(prefix).removesuffix(".webp").removesuffix(f" ({number})")
        assert stem.startswith(kept)  # whole characters from the start, nothing altered
        assert not kept.endswith("\u200d")


def test_short_names_are_untouched() -> None:
    assert NameAllocator().allocate("Küche – Süd.jpg", "x", ".jpg", "01 - ") == "01 - Küche – Süd.jpg"
    assert fit_bytes("東京", 5) == "東"  # 6 bytes: the second character does not fit whole


def test_content_disposition_name_fits_255_bytes() -> None:
    header = content_disposition(EMOJI, "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c")
    name = unquote(header.split("filename*=UTF-8''")[1])
    assert name.endswith(".zip") and utf8(name) <= MAX_NAME_BYTES and EMOJI.startswith(name.removesuffix(".zip"))


def test_an_order_of_long_names_extracts_to_disk_with_every_reader(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service(rate_limit="")
    names = [f"{CJK}.jpg", f"{EMOJI}.jpg", f"{EMOJI}.jpg", f"{FAMILY}.png", f"{MIXED}.jpg"]
    images = [SeedImage(name=name, size=5_000 + i) for i, name in enumerate(names)]
    order_id = str(simulator.state.seed_order(name=EMOJI, images=images)["order_id"])
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"sets": "full,original", "names": "sequence"})
    assert response.status_code == 200, response.text
    members = check_zip(response.content)  # zipfile, unzip -t, bsdtar -t
    photos = [name for name in members if not name.startswith("_")]
    assert len(photos) == 10
    for name in photos:
        folder, file_name = name.split("/")
        assert folder in ("full", "original") and file_name[:5] in {f"0{n} - " for n in range(1, 6)}
        assert utf8(file_name) <= MAX_NAME_BYTES
    assert sum(name.endswith(".png") for name in photos) == 1  # the original keeps its own extension
    for reader, landed in extract_zip(response.content, tmp_path).items():
        assert landed == members, f"{reader} wrote something else than the archive holds"
    saved_as = unquote(response.headers["content-disposition"].split("filename*=UTF-8''")[1])
    assert utf8(saved_as) <= MAX_NAME_BYTES
