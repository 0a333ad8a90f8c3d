"""Drive the simulator with the OFFICIAL, unmodified `autoenhance` SDK (1.1.0 or 1.0.7).

    PYTHONPATH=.sdk/1.1.0 python tests/support/sdk_scenario.py http://127.0.0.1:PORT some-api-key

Create order -> create image -> PUT the bytes (`upload_url` for 1.1.0, `s3PutObjectUrl` for
1.0.x) -> poll retrieve_image until processed -> download enhanced PNG and JPEG -> download the
original -> list orders -> rename -> report, reprocess -> delete the image; plus the HDR bracket
calls of the version at hand. The SDK's strict pydantic models parse every response, so a field
the simulator gets wrong fails here. Prints a JSON summary on success; exits 1 with a message on
the first failure.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import autoenhance
import urllib3
from autoenhance.exceptions import ApiException, NotFoundException
from PIL import Image, ImageDraw


class ScenarioError(AssertionError):
    """A step did not behave as the SDK user expects."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioError(message)


def photo(width: int = 1400, height: int = 900) -> bytes:
    """A dull test photo, wider than the 1024 px preview cap."""
    img = Image.new("RGB", (width, height), (90, 95, 110))
    draw = ImageDraw.Draw(img)
    for i in range(0, width, 70):
        draw.rectangle((i, height // 2, i + 35, height), fill=(110, 90, 70))
    draw.ellipse((width // 3, 80, width // 3 + 300, 380), fill=(170, 175, 190))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def decoded(data: bytes | bytearray) -> Image.Image:
    import pillow_jxl  # noqa: F401  (JPEG XL for Pillow)

    img = Image.open(io.BytesIO(bytes(data)))
    img.load()
    return img


def put(url: str, body: bytes, content_type: str) -> None:
    response = urllib3.request("PUT", url, body=body, headers={"Content-Type": content_type})
    check(response.status == 200, f"upload PUT answered {response.status}: {response.data[:200]!r}")


def wait_for(get_status: Callable[[], Any], want: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        item = get_status()
        if item.status == want:
            return item
        check(item.status in ("waiting", "processing"), f"unexpected status {item.status!r} ({item.status_reason})")
        check(time.monotonic() < deadline, f"still {item.status!r} after {timeout}s")
        time.sleep(0.1)


def run(base_url: str, api_key: str) -> dict[str, Any]:
    version = autoenhance.__version__
    new_sdk = version >= "1.1"
    client = autoenhance.Autoenhance(api_key, baseURL=base_url)

    order = client.create_order(name=f"SDK {version} scenario")
    check(isinstance(order, dict) and order.get("order_id"), f"create_order returned {order!r}")
    order_id = order["order_id"]

    original_bytes = photo()
    created = client.create_image(
        image_name="kitchen.jpg", order_id=order_id, content_type="image/jpeg", ai_version="4.x", enhance_type="warm"
    )
    image_id = created.image_id
    check(created.order_id == order_id, "image not created in the order")
    upload_url = created.upload_url if new_sdk else created.s3_put_object_url
    check(isinstance(upload_url, str) and upload_url.startswith("http"), f"no upload URL in {created!r}")
    put(upload_url, original_bytes, "image/jpeg")

    image = wait_for(lambda: client.retrieve_image(id=image_id), "processed")
    check(image.ai_version == "4.x" and image.enhance_type == "warm", "settings not echoed")

    png = client.download_enhanced_image(id=image_id, format="png", preview=False)
    png_img = decoded(png)
    check(png_img.format == "PNG", f"format=png gave {png_img.format}")
    check(png_img.size == (1400, 900), f"full-size download is {png_img.size}")
    jpeg = client.download_enhanced_image(id=image_id, format="jpeg", quality=80)
    jpeg_img = decoded(jpeg)
    check(jpeg_img.format == "JPEG", f"format=jpeg gave {jpeg_img.format}")
    check(jpeg_img.size[0] <= 1024, f"preview is {jpeg_img.size[0]} px wide")
    # The download documentation lists avif|png|jpeg|jxl|webp; the SDK passes any string through.
    for fmt, pil in (("avif", "AVIF"), ("jxl", "JXL")):
        encoded = decoded(client.download_enhanced_image(id=image_id, format=fmt, max_width=300))
        check(encoded.format == pil and encoded.size[0] == 300, f"format={fmt} gave {encoded.format} {encoded.size}")

    original = client.download_original_image(id=image_id)
    check(bytes(original) == original_bytes, "original download differs from the upload")

    listed = client.list_orders(per_page=5)
    check(order_id in [o.order_id for o in listed.orders or []], "new order missing from list_orders")
    check(listed.pagination is not None and listed.pagination.per_page == 5, f"pagination {listed.pagination!r}")

    renamed = client.update_order(id=order_id, name="Renamed by the SDK")
    check(renamed.name == "Renamed by the SDK", f"update_order returned name {renamed.name!r}")
    fetched = client.retrieve_order(id=order_id)
    check(fetched.total_images == 1 and fetched.is_processing is False, f"order after processing: {fetched!r}")

    report = client.report_image(id=image_id, categories=["COLOUR"], comment="too warm", score=4, source="API")
    check(isinstance(report, dict), f"report_image returned {report!r}")
    client.v3_images_id_process_post(id=image_id, enhance_type="neutral")
    reprocessed = wait_for(lambda: client.retrieve_image(id=image_id), "processed")
    check(reprocessed.enhance_type == "neutral", "reprocess did not keep the new enhance_type")

    hdr_order = client.create_order(name="HDR")["order_id"]
    if new_sdk:
        bracket = client.v3_brackets_post(order_id=hdr_order, name="bracket-1.jpg")
        put(bracket.upload_url, original_bytes, "application/octet-stream")
        brackets = client.v3_orders_order_id_brackets_get(order_id=hdr_order)
        check([b.is_uploaded for b in brackets.brackets or []] == [True], f"brackets: {brackets!r}")
        processed = client.process_order(id=hdr_order, number_of_brackets_per_image=1)
        check(processed.total_images == 1, f"process_order gave {processed!r}")
    else:
        bracket = client.create_image(
            image_name="bracket-1.jpg", order_id=hdr_order, hdr=True, content_type="image/jpeg"
        )
        put(bracket.s3_put_object_url, original_bytes, "image/jpeg")
        client.merge_hdr(id=hdr_order, number_of_brackets_per_image=1)
        check(client.retrieve_order(id=hdr_order).total_images == 1, "merge_hdr left no image")
    client.delete_order(id=hdr_order)

    client.delete_image(id=image_id)
    try:
        client.retrieve_image(id=image_id)
    except NotFoundException:
        pass
    else:
        raise ScenarioError("deleted image still retrievable")

    return {"sdk": version, "order_id": order_id, "image_id": image_id, "hdr_order_id": hdr_order}


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        summary = run(sys.argv[1], sys.argv[2])
    except (ScenarioError, ApiException, ValueError, OSError) as exc:
        print(f"SDK scenario failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
