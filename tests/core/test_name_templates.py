"""Name templates on every door (the ZIP route, jobs, the CLI), over real HTTP against the simulator, and
the parser's refusals: caller text is parsed by our own small parser, never handed to str.format."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.delivery.templates import Values, parse_template, render
from app.errors import InvalidOption
from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.cli_runner import run
from tests.support.jobs_helpers import poll
from tests.support.zipcheck import check_zip

NAMES = ("front.jpg", "kitchen.jpg", "bath.jpg")


def _order(sim: Sim, name: str = "123 Main St.", names: tuple[str, ...] = NAMES) -> str:
    return str(sim.state.seed_order(name=name, images=[SeedImage(name=n) for n in names])["order_id"])


def _names(archive: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return zf.namelist()


def test_board_templates_on_the_zip_route(simulator: Sim, service: Service) -> None:
    order_id = _order(simulator)
    with service.client() as client:
        printed = client.get(f"/orders/{order_id}/images", params={"template": "{n:1}-print-{order:slug}.{ext}"})
        assert printed.status_code == 200, printed.text
        assert _names(printed.content) == ["1-print-123-main-st.jpg", "2-print-123-main-st.jpg",
                                           "3-print-123-main-st.jpg", "_manifest.json"]  # fmt: skip
        board = client.get(f"/orders/{order_id}/images", params={"template": "MLS#{letter}", "sets": "full,web"})
        assert sorted(_names(board.content)) == sorted(
            [f"{s}/MLS#{x}.jpg" for s in ("full", "web") for x in "abc"] + ["_manifest.json"]
        )
        members = check_zip(board.content)
        assert '"template": "MLS#{letter}"' in members["_manifest.json"].decode()

        # names=sequence is the template "{n} - {name}": the same names, byte for byte
        sequence = client.get(f"/orders/{order_id}/images", params={"names": "sequence"})
        templated = client.get(f"/orders/{order_id}/images", params={"template": "{n} - {name}"})
        assert _names(sequence.content) == _names(templated.content) == [
            "01 - front.jpg", "02 - kitchen.jpg", "03 - bath.jpg", "_manifest.json"
        ]  # fmt: skip


def test_template_results_pass_the_safety_and_uniqueness_rules(simulator: Sim, service: Service) -> None:
    order_id = _order(simulator, name="../../etc/CON", names=("a.jpg", "b.jpg"))
    with service.client() as client:
        same = client.get(f"/orders/{order_id}/images", params={"template": "{order}"})
        names = _names(same.content)
        assert names[:2] == ["_.._etc_CON.jpg", "_.._etc_CON (2).jpg"]  # one plain file name each; made unique
        assert all("/" not in n and "\\" not in n for n in names)
        upper = client.get(f"/orders/{order_id}/images", params={"template": "{name:upper}.JPG"})
        assert _names(upper.content)[:2] == ["A.jpg", "B.jpg"]  # the template's extension is not doubled


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{0.__class__}", "is unknown"),
        ("{name.__globals__}", "is unknown"),
        ("{address}", "is unknown"),
        ("{n:9}", "n takes"),
        ("{order:format}", "order takes"),
        ("{n", "without its '}'"),
        ("name}", "without its '{'"),
    ],
)
def test_bad_templates_are_a_422_before_any_download(
    simulator: Sim, service: Service, template: str, says: str
) -> None:
    order_id = _order(simulator)
    simulator.state.assets_served.clear()
    with service.client() as client:
        for method, route in (("GET", "images"), ("POST", "jobs")):
            response = client.request(method, f"/orders/{order_id}/{route}", params={"template": template})
            assert response.status_code == 422, response.text
            assert says in response.json()["detail"]
    assert sum(simulator.state.assets_served.values()) == 0


def test_the_parser_keeps_braces_and_never_formats() -> None:
    values = Values(n=27, width=2, name="front", ext="jpg", order="Oak", set="full")
    assert render(parse_template("{{n}}-{n}-{letter}-{letter:upper}"), values) == "{n}-27-aa-AA"
    with pytest.raises(InvalidOption):
        parse_template("x" * 201)
    with pytest.raises(InvalidOption):
        parse_template("   ")


def test_templates_on_jobs_and_the_cli(simulator: Sim, start_service: Callable[..., Service], tmp_path: Path) -> None:
    order_id = _order(simulator)
    service = start_service()
    with service.client() as client:
        job = client.post(f"/orders/{order_id}/jobs", params={"template": "{order:slug}-{n}"}).json()
        status = poll(client, job["job_id"], lambda s: s["status"] == "completed")
        assert status["options"]["template"] == "{order:slug}-{n}"
        assert _names(client.get(status["download_url"]).content)[0] == "123-main-st-01.jpg"

    out = tmp_path / "client.zip"
    code, _, err = run("download", order_id, "--url", service.url, "-o", str(out), "--template", "{n:1}-print-{order:slug}")
    assert code == 0, err
    assert _names(out.read_bytes())[0] == "1-print-123-main-st.jpg"
    direct = tmp_path / "direct.zip"
    code, _, err = run("download", order_id, "-o", str(direct), "--api-key", TEST_KEY, "--base-url", simulator.url,
                       "-t", "MLS#{letter}")  # fmt: skip
    assert code == 0, err
    assert _names(direct.read_bytes()) == ["MLS#a.jpg", "MLS#b.jpg", "MLS#c.jpg", "_manifest.json"]
    code, _, err = run("download", order_id, "--url", service.url, "-o", str(tmp_path / "x.zip"), "-t", "{oops}")
    assert code == 2 and "{oops} is unknown" in err
