"""The naive baseline: what the reference implementation (seed 001) describes, kept small on purpose.

Fetch the order, download every enhanced image under a semaphore of 5 (one retry on 5xx or a
timeout), write each into a ZIP held in a SpooledTemporaryFile (10 MB in memory, then disk) as it
completes, and only then send the whole archive. Members are stored, not deflated, so the
comparison with our service is about the pipeline, not about compression.

    python -m bench.naive --port 8100 --upstream http://127.0.0.1:8001 --api-key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SEMAPHORE = 5
SPOOL_BYTES = 10 * 1024 * 1024


def create_app(upstream: str, api_key: str) -> Starlette:
    http: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal http
        async with httpx.AsyncClient(
            base_url=upstream, headers={"x-api-key": api_key}, follow_redirects=True, timeout=60
        ) as client:
            http = client
            yield

    async def fetch(image_id: str, sem: asyncio.Semaphore) -> tuple[str, bytes | None]:
        assert http is not None
        async with sem:
            for attempt in range(2):
                try:
                    response = await http.get(f"/v3/images/{image_id}/enhanced")
                except httpx.TimeoutException:
                    response = None
                if response is not None and response.status_code < 500:
                    return image_id, response.content if response.status_code == 200 else None
                if attempt == 0:
                    await asyncio.sleep(1)
            return image_id, None

    async def batch(request: Request) -> Response:
        assert http is not None
        order = (await http.get(f"/v3/orders/{request.path_params['order_id']}")).json()
        sem = asyncio.Semaphore(SEMAPHORE)
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        failed = []
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
            tasks = [fetch(image["image_id"], sem) for image in order["images"]]
            for done in asyncio.as_completed(tasks):
                image_id, body = await done
                if body is None:
                    failed.append(image_id)
                else:
                    archive.writestr(f"{image_id}.jpg", body)
            if failed:
                archive.writestr("_download_report.txt", "\n".join(failed))
        if len(failed) == len(order["images"]):
            spool.close()
            return JSONResponse({"detail": "all images failed"}, status_code=422)
        spool.seek(0)

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := spool.read(1024 * 1024):
                    yield chunk
            finally:
                spool.close()

        return StreamingResponse(body(), media_type="application/zip")

    return Starlette(routes=[Route("/orders/{order_id}/images", batch)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.upstream, args.api_key), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
