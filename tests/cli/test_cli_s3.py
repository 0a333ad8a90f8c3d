"""`download --job` against a scaled-out service whose job results live in S3: the download answers
307 to a presigned URL, which the CLI follows (without the service's key) and resumes with Range
there after a cut. Real Redis (a fresh key prefix), real moto S3 server, real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.cli_runner import run
from tests.support.cluster import REDIS_URL, moto_s3
from tests.support.tcp_proxy import proxy
from tests.support.zipcheck import check_zip

SERVICE_KEY = "service-key-for-s3-test"


def test_a_job_in_s3_is_downloaded_through_its_redirect_and_resumed_there(
    simulator: Sim, start_service: Callable[..., Service], redis_prefix: str, tmp_path: Path
) -> None:
    order = simulator.state.seed_order(name="In S3", images=[SeedImage(name=f"{n}.jpg", size=250_000) for n in range(4)])
    out = tmp_path / "s3.zip"
    with moto_s3(tmp_path) as s3, proxy(s3.endpoint, cut_after=400_000) as cutting:
        # the presigned URLs name the cutting proxy, so every GET of the archive is cut after 400 KB
        # (more than the CLI's 256 KiB write chunk, so each connection leaves bytes to resume from)
        service = start_service(
            **(s3.settings() | {"s3_endpoint_url": cutting.url}),
            redis_url=REDIS_URL,
            redis_key_prefix=redis_prefix,
            service_api_key=SERVICE_KEY,
        )
        code, _, err = run(
            "download", str(order["order_id"]), "-o", str(out), "--url", service.url, "--job",
            env={"AUTOENHANCE_BATCH_KEY": SERVICE_KEY},
        )  # fmt: skip
        sent = cutting.requests
        assert cutting.cuts >= 2
    assert code == 0, err
    assert "Connection lost at" in err
    gets = re.findall(r"^GET (/\S+) HTTP/1\.1", sent, re.MULTILINE)
    assert len(gets) >= 3 and all("X-Amz-Signature=" in g for g in gets)  # the presigned URL, each time
    assert re.search(r"^Range: bytes=[1-9]\d*-", sent, re.IGNORECASE | re.MULTILINE)  # resumed there, not restarted
    assert SERVICE_KEY not in sent and "x-api-key" not in sent.lower()  # the key stayed with the service
    files = check_zip(out.read_bytes())
    assert sorted(n for n in files if n.endswith(".jpg")) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert not list(tmp_path.glob("*.part*"))
