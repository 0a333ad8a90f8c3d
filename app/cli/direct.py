"""Direct mode: run the engine in this process, straight against Autoenhance, with no service.

A photographer with an Autoenhance key needs nothing else: `autoenhance-batch download ORDER
--api-key KEY`. The same engine as the service's (app/core: plan, fetch under a budget, retries,
archive, report and manifest); this module only chooses where the bytes go and shows progress.

Resume: each downloaded file is also kept in `<out>.parts/` (app/cli/saved_parts.py) until the ZIP is
complete, so a run that is interrupted and started again keeps what it had and fetches the rest.
Imports nothing from the web server (no FastAPI, no uvicorn): the base install is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress

from app.cli.orders import resolve_order_name
from app.cli.partfile import open_own
from app.cli.saved_parts import FolderKeep, KeepRefused
from app.cli.shown import shown
from app.cli.topup import ArchiveKeep, EarlierArchive
from app.cli.transfer import Outcome, TransferError, image_and_byte_tasks, part_path
from app.core.budget.local import FairLimiter
from app.core.delivery.selection import pick, selected
from app.core.delivery.sets import credit_cost, files_and_photos
from app.core.engine import Batch, Engine, EngineLimits
from app.core.models import BatchOptions, NameStyle, OrderInfo, assign_numbers, is_order_id
from app.core.network.proxies import env_proxies
from app.core.network.tls import client_context
from app.core.network.trusted_hosts import env_entries
from app.core.spool import Keep
from app.core.stats import Stats
from app.core.upstream.client import DEFAULT_API_VERSION, AutoenhanceClient
from app.core.upstream.factory import build_client
from app.core.wait import WaitOptions, wait_until_ready
from app.errors import ServiceError, UpstreamAuthError, UpstreamUnavailable

CONCURRENCY = 6
"""Downloads in flight at once: enough to fill a home connection, gentle on Autoenhance's limits."""
MAX_IMAGES = 100_000
MAX_IMAGE_BYTES = 512 * 1024 * 1024
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024


def parts_path(out: Path) -> Path:
    """The folder of files kept while the ZIP is being made (removed once it is complete)."""
    return out.with_name(out.name + ".parts")


@dataclass
class DirectRun:
    order_id: str
    options: BatchOptions
    out: Path
    api_key: str
    base_url: str
    wait: WaitOptions = field(default_factory=WaitOptions)
    timeout: float = 120.0
    concurrency: int = CONCURRENCY
    asset_hosts: list[str] = field(default_factory=env_entries)
    """ALLOWED_ASSET_HOSTS, as the service reads it: an operator's private asset store works here too."""
    api_version: str = field(default_factory=lambda: api_version_from_env())
    """AUTOENHANCE_API_VERSION, as the service reads it: the same answers as the service is tested against."""
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    """--only/--exclude: ids, names or shell patterns, resolved against the order (app/core/delivery/selection.py)."""

    transport: httpx.AsyncBaseTransport | None = None
    """`autoenhance-batch demo`: the bundled simulator in this process (an ASGI app), reached through httpx."""
    earlier: EarlierArchive | None = None
    """`out` itself, a partial ZIP of this order and options from an earlier run: its files are reused."""
    confirm: Callable[[int, Progress], None] | None = None
    """Asks a person before credits are spent (returns to go on, raises to stop); None: agreed already."""
    place: Callable[[str | None], None] | None = None
    """Chooses `out` from the order's name (called once the order is known, before any download)."""

    @property
    def demo(self) -> bool:
        return self.transport is not None


API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def api_version_from_env() -> str:
    """AUTOENHANCE_API_VERSION when it is a YYYY-MM-DD date, else the version this release pins."""
    value = os.environ.get("AUTOENHANCE_API_VERSION", "").strip()
    if not value:
        return DEFAULT_API_VERSION
    if not API_VERSION.match(value):
        raise TransferError(f"AUTOENHANCE_API_VERSION must be a date such as {DEFAULT_API_VERSION}, not {value[:40]!r}")
    return value


def _engine(client: AutoenhanceClient, spool_dir: Path, concurrency: int) -> Engine:
    limits = EngineLimits(
        per_order=concurrency,
        max_images=MAX_IMAGES,
        spool_dir=spool_dir,
        spool_memory_bytes=SPOOL_MEMORY_BYTES,
        max_image_bytes=MAX_IMAGE_BYTES,
    )
    return Engine(client, FairLimiter(concurrency, minimum=1), limits, Stats())


async def _archive(batch: Batch, part: Path, progress: Progress) -> int:
    images, data = image_and_byte_tasks(progress, batch.total, None)
    written = 0
    with open_own(part, "wb") as file:
        async for chunk in batch.archive():
            await asyncio.to_thread(file.write, chunk)
            written += len(chunk)
            note = f"{batch.failed} failed" if batch.failed else ""
            progress.update(images, completed=batch.finished, note=note)
            progress.update(data, completed=written)
    progress.update(images, completed=batch.finished)
    progress.update(data, total=written, completed=written)
    return written


@contextlib.asynccontextmanager
async def direct_client(
    base_url: str,
    api_key: str,
    seconds: float,
    api_version: str,
    asset_hosts: list[str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[AutoenhanceClient]:
    """The client to Autoenhance, built as the service builds it (app/core/upstream/factory.py), without its
    metrics, tracing and breaker; the same pinned API version. `transport`: the demo's in-process
    simulator (an ASGI app, reached through httpx only)."""
    http_timeout = httpx.Timeout(connect=10.0, read=min(seconds, 60.0), write=30.0, pool=None)
    async with httpx.AsyncClient(
        timeout=http_timeout, follow_redirects=False, trust_env=transport is None, transport=transport,
        verify=client_context(trust_env=transport is None),
    ) as http:
        client = build_client(
            base_url=base_url,
            api_key=api_key,
            http=http,
            read_timeout=min(seconds, 60.0),
            asset_hosts=asset_hosts if asset_hosts is not None else env_entries(),
            proxies=env_proxies(),
            image_timeout=seconds,
            order_timeout=30.0,
            api_version=api_version,
            images_over_http=transport is not None,
        )
        try:
            yield client
        finally:
            await client.aclose()


async def download_direct(run: DirectRun, progress: Progress, say: Callable[[str], None]) -> Outcome:
    """Fetch the order, warn about credits, and write the ZIP (resuming from `<out>.parts/`)."""
    async with direct_client(
        run.base_url, run.api_key, run.timeout, run.api_version, run.asset_hosts, run.transport
    ) as client:
        if not is_order_id(run.order_id):
            run.order_id = await resolve_order_name(client, run.order_id, say)
        return await _download(client, run, progress, say)


async def _download(
    client: AutoenhanceClient, run: DirectRun, progress: Progress, say: Callable[[str], None]
) -> Outcome:
    try:
        order = await client.get_order(run.order_id, run.options.sort)
        if run.wait.wait:
            say("Waiting for Autoenhance to finish enhancing the order...")
        order = await wait_until_ready(client, order, run.wait)
        if run.only or run.exclude:
            run.options = dataclasses.replace(run.options, images=pick(order, run.only, run.exclude))
    except UpstreamAuthError:
        raise TransferError("Autoenhance rejected the API key (check --api-key or AUTOENHANCE_API_KEY)") from None
    except UpstreamUnavailable as exc:
        if isinstance(exc.__cause__, httpx.TransportError):  # not an answer: nothing there, or no network
            raise TransferError(
                f"Could not reach Autoenhance at {run.base_url} ({type(exc.__cause__).__name__}): check --base-url "
                "(or AUTOENHANCE_BASE_URL) and the network, then run the same command again"
            ) from None
        raise TransferError(exc.message) from None
    except ServiceError as exc:
        raise TransferError(exc.message) from None
    if run.place is not None:
        run.place(order.name)
    chosen = selected(order, run.options)
    _announce(chosen, run.options, say, demo=run.demo)
    credits = credit_cost(len(chosen.images), run.options).credits
    if run.confirm is not None and credits and not run.demo:
        run.confirm(credits, progress)
    with tempfile.TemporaryDirectory(prefix="autoenhance-batch-") as spool_dir:
        return await _run_batch(client, order, run, Path(spool_dir), progress, say)


def _announce(order: OrderInfo, options: BatchOptions, say: Callable[[str], None], *, demo: bool = False) -> None:
    photos = len(order.images)
    say(f"Order {shown(order.name or order.order_id)}: {files_and_photos(photos, options.sets, order.listed)}")
    cost = credit_cost(photos, options)
    if demo:
        say("This is a demo: the bundled simulator stands in for Autoenhance; nothing leaves this computer.")
    elif cost.credits:
        say(f"[bold yellow]{cost.sentence()}[/]")


async def _run_batch(
    client: AutoenhanceClient, order: OrderInfo, run: DirectRun, spool_dir: Path, progress: Progress,
    say: Callable[[str], None],
) -> Outcome:
    engine = _engine(client, spool_dir, run.concurrency)
    # Not the order's last_updated_at: a full-size download itself can bump it (the image becomes
    # "downloaded"), which would throw away exactly the files a rerun should reuse.
    identity = {"order_id": order.order_id, "options": run.options.key()}
    try:
        folder = FolderKeep(parts_path(run.out), identity)
    except KeepRefused as exc:
        raise TransferError(str(exc)) from None
    kept = folder.saved()
    if run.options.names is NameStyle.sequence:  # a rerun names its files as the interrupted run did
        order = replace(order, numbers=assign_numbers(order.images, folder.numbers()))
        folder.keep_numbers(order.numbers or {})
    if kept:
        say(f"Resuming: {kept} file{'s' * (kept != 1)} already downloaded by an earlier run are reused")
    keep: Keep = folder
    if run.earlier is not None:
        have = len(run.earlier.members)
        say(
            f"{shown(run.out)} holds {have} of its {run.earlier.total} files from an earlier run: they are kept, "
            f"and only the missing ones are fetched"
        )
        keep = ArchiveKeep(folder, run.earlier)
    part = part_path(run.out)
    try:
        batch = await engine.open(order, run.options, keep=keep)
    except ServiceError as exc:
        folder.discard()
        raise TransferError(exc.message) from None
    batch.summary.retry_hint = (
        "Run the same command again (the same -o): the files this ZIP holds are kept and only the missing "
        "ones are fetched."
    )
    try:
        if not await batch.wait_first():
            await batch.aclose()
            folder.discard()
            first = batch.failures[0].reason if batch.failures else "no image could be downloaded"
            raise TransferError(f"None of the order's {batch.total} files could be downloaded (first: {first})")
        written = await _archive(batch, part, progress)
    except BaseException:
        part.unlink(missing_ok=True)  # the kept files stay: the next run starts from them
        await batch.aclose()
        raise
    part.replace(run.out)
    folder.discard()
    if batch.reused:
        new = batch.downloaded - batch.reused
        say(f"{batch.reused} of the files came from the earlier run; {new} {'was' if new == 1 else 'were'} downloaded now")
    failures: list[dict[str, Any]] = [dict(f.as_dict()) for f in batch.failures]
    return Outcome(run.out, written, total=batch.total, downloaded=batch.downloaded, failed=batch.failed, failures=failures)
