"""`autoenhance-batch` (or `python -m app`): download an order's ZIP, serve the API, make a demo order.

`download` has two modes. Direct (an Autoenhance API key, no `--url`): the engine runs in this
process straight against Autoenhance (app/cli/direct.py), so a photographer needs nothing but this
command. Client (`--url`): it talks HTTP to a running service, deployed or local, which does the work.
"""

from __future__ import annotations

import asyncio
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.filesize import decimal

from app.cli.transfer import (
    Outcome,
    TransferError,
    error_detail,
    job_archive,
    progress_bars,
    stream_archive,
)
from app.core.models import (
    BatchOptions,
    ImageFormat,
    ImageInfo,
    ImageSort,
    NameStyle,
    OrderInfo,
    SetDefinition,
    validate_order_id,
)
from app.core.models import is_order_id as looks_like_order_id
from app.core.naming import safe_stem
from app.core.selection import pick
from app.core.setfile import SetFileError, load_sets
from app.core.sets import MAX_DPI, MIN_DPI, SET_HELP, catalogue, credit_cost, definitions, parse_sets
from app.core.templates import checked_template
from app.core.wait import MAX_WAIT_SECONDS, WaitOptions
from app.errors import InvalidOption, InvalidOrderId

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_BASE_URL = "https://api.autoenhance.ai"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

cli = typer.Typer(
    name="autoenhance-batch",
    help="Autoenhance Batch: every enhanced photo of an Autoenhance.ai order as one ZIP.",
    epilog="Examples (from a clone, `python -m app` works the same):\n\n"
    "  autoenhance-batch download 7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c --api-key $KEY -o photos.zip\n\n"
    "  autoenhance-batch download $ORDER --sets mls,original --names sequence --no-preview\n\n"
    "  autoenhance-batch download $ORDER --url http://127.0.0.1:8000 --format png --job\n\n"
    "  autoenhance-batch serve --port 8000\n\n"
    "  ORDER=$(autoenhance-batch sample-order)",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)


UrlOption = Annotated[
    str,
    typer.Option(
        "--url", "-u", envvar="AUTOENHANCE_BATCH_URL", show_envvar=True,
        help="Base URL of the running Autoenhance Batch service.",
    ),
]
ServiceUrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", "-u", envvar="AUTOENHANCE_BATCH_URL", show_envvar=True, show_default=False,
        help="Client mode: a running Autoenhance Batch service does the work. "
        f"Default without --api-key: {DEFAULT_URL}",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key", "-k", envvar="AUTOENHANCE_BATCH_KEY", show_envvar=True, show_default=False,
        help="The service's key (its SERVICE_API_KEY), sent as X-API-Key. Only if the operator set one.",
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the service to answer or send more bytes.")
]


def _client(url: str, key: str | None, timeout: float, extra_headers: dict[str, str] | None = None) -> httpx.Client:
    headers = {"user-agent": "autoenhance-batch-cli"} | (extra_headers or {})
    if key:
        headers["x-api-key"] = key
    return httpx.Client(
        base_url=url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), trust_env=True
    )


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {message}")
    return typer.Exit(EXIT_ERROR)


def _usage(message: str) -> typer.Exit:
    """A wrong command line: one line, exit 2, and nothing asked of anyone."""
    err.print(f"[bold red]Error:[/] {message}")
    return typer.Exit(EXIT_USAGE)


def _summary(outcome: Outcome, unit: str = "images") -> int:
    size = decimal(outcome.bytes)  # the same units (kB, MB, GB) as the progress bars
    if outcome.resumed_from:
        err.print(f"Resumed with Range from byte {', '.join(map(str, outcome.resumed_from))}.")
    counts = ""
    if outcome.downloaded is not None:
        counts = f": {outcome.downloaded} of {outcome.total} {unit}"
    if outcome.failed:
        err.print(f"[bold yellow]Saved {outcome.path} ({size}){counts}; {outcome.failed} could not be included:[/]")
        for failure in outcome.failures:
            err.print(f"  - {failure.get('name') or failure.get('image_id')}: {failure.get('reason')}")
        err.print("  (details and how to recover: _download_report.txt inside the ZIP)")
        return EXIT_PARTIAL
    err.print(f"[bold green]Saved {outcome.path}[/] ({size}){counts}.")
    return 0


@cli.command()
def download(
    order_id: Annotated[
        str,
        typer.Argument(
            help="The Autoenhance order id (a UUID), or its name (direct mode: it must pick one order).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to save the ZIP. Default: autoenhance-<order id>.zip", show_default=False),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="AUTOENHANCE_API_KEY", show_envvar=True, show_default=False,
            help="Direct mode: your Autoenhance API key; this command downloads straight from Autoenhance.",
        ),
    ] = None,
    base_url: Annotated[
        str, typer.Option("--base-url", envvar="AUTOENHANCE_BASE_URL", help="Direct mode: the Autoenhance API.")
    ] = DEFAULT_BASE_URL,
    sets: Annotated[
        str,
        typer.Option(
            "--sets", "-s",
            help="Comma list of sets, each in its own folder: " + "; ".join(f"{k} ({v})" for k, v in SET_HELP.items()),
        ),
    ] = "full",
    names: Annotated[
        NameStyle, typer.Option("--names", help="sequence: number the files in the order's order ('01 - front.jpg').")
    ] = NameStyle.original,
    sort: Annotated[
        ImageSort | None,
        typer.Option("--sort", help="Photo order for --names sequence, the manifest and the report. Default: the "
                     "order's own, as arranged on Autoenhance.", show_default=False),
    ] = None,
    format: Annotated[ImageFormat, typer.Option("--format", "-f", help="Format of the full set.")] = ImageFormat.jpeg,
    quality: Annotated[
        int | None, typer.Option("--quality", "-q", min=1, max=90, help="Image quality 1-90 (default: Autoenhance's).")
    ] = None,
    max_width: Annotated[
        int | None, typer.Option("--max-width", min=1, max=20000, help="Full set: at most this many pixels wide.")
    ] = None,
    scale: Annotated[float | None, typer.Option("--scale", min=0.01, max=1.0, help="Full set: scale factor 0-1.")] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview/--no-preview",
            help="Previews are free. [bold]--no-preview[/] downloads full resolution and [bold]spends credits[/] "
            "unless --dev-mode (the mls set is always full resolution).",
        ),
    ] = True,
    dev_mode: Annotated[
        bool, typer.Option("--dev-mode", help="Autoenhance dev mode: no credits spent, watermarked images.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until Autoenhance has finished enhancing the order (see --wait-timeout).")
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", min=1, max=MAX_WAIT_SECONDS, help="With --wait: seconds at most.")
    ] = 60.0,
    dpi: Annotated[
        int | None,
        typer.Option("--dpi", min=MIN_DPI, max=MAX_DPI, help="Full set: dots per inch written into each file (72+)."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template", "-t",
            help="Name files from a template: {n} {name} {ext} {order} {set} {letter}, e.g. "
            "'{n:1}-print-{order:slug}' (1-print-123-main-st.jpg) or 'MLS1234{letter}' (MLS1234a.jpg).",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Only these photos: image ids, exact names or shell patterns ('*kitchen*'); repeat or comma-separate.",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", help="Leave these photos out: ids, names or shell patterns; repeat or comma-separate.",
            show_default=False,
        ),
    ] = None,
    job: Annotated[
        bool,
        typer.Option(
            "--job",
            help="Client mode: prepare the ZIP as a job on the service, then download the file. Shows per-image "
            "progress while the job runs. Either way a cut download resumes (also on the next run with the same -o).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")] = False,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=50, help="Resume attempts after a cut connection.")
    ] = 5,
    url: ServiceUrlOption = None,
    key: KeyOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Download every enhanced photo of an order as one ZIP, with progress (files and bytes).

    With --api-key (or AUTOENHANCE_API_KEY) and no --url it downloads straight from Autoenhance;
    stopped and run again, it keeps the photos already saved and fetches only the rest.

    Exit status: 0 all images saved; 3 saved, but some images are missing (listed, and in the ZIP's
    report); 1 nothing saved (the reason is printed); 2 the command line is wrong (nothing was asked).
    """
    direct = url is None and bool(api_key)
    by_name = not looks_like_order_id(order_id)
    try:
        text = order_id.strip()
        if by_name and (url is not None or not api_key or not text.isprintable() or len(text) > 200):
            validate_order_id(text)  # not a name direct mode can look up: say what an id looks like
        order_id = order_id.strip() if by_name else validate_order_id(order_id.strip())
        operator_sets = _operator_sets() if direct else {}
        chosen_sets = parse_sets(sets, operator_sets, lenient=not direct)  # a service knows its own sets
        options = BatchOptions(
            format=format, quality=quality, preview=preview, dev_mode=dev_mode, sets=chosen_sets, names=names,
            custom=definitions(chosen_sets, operator_sets), max_width=max_width, scale=scale,
            sort=sort.value if sort is not None else None, template=checked_template(template), dpi=dpi,
        )
    except InvalidOrderId as exc:
        raise _usage(f"{exc.message} (an order's name works in direct mode, with --api-key)") from None
    except InvalidOption as exc:
        raise _usage(exc.message) from None
    except SetFileError as exc:
        raise _usage(str(exc)) from None
    chosen_only, chosen_out = _items(only), _items(exclude)
    out = output or Path(f"autoenhance-{safe_stem(order_id, 'order')[:40] if by_name else order_id[:8]}.zip")
    if not out.parent.is_dir():
        raise _usage(f"The folder {out.parent} does not exist; create it or choose another -o")
    if out.is_dir():
        raise _usage(f"{out} is a folder; give a file name such as {out / 'photos.zip'}")
    if out.exists() and not force:
        raise _fail(f"{out} exists; pass --force to overwrite it")
    unit = "images" if options.sets == ("full",) else "files"
    if url is None and api_key and job:
        raise _usage("--job prepares the ZIP on a service: give its --url, or leave --job out to download directly")
    if url is None and api_key:
        run = _direct(order_id, options, out, api_key, base_url, wait, wait_timeout, timeout, (chosen_only, chosen_out))
        raise typer.Exit(_summary(run, unit))
    url = url or DEFAULT_URL
    params = {"format": format.value, "preview": str(preview).lower(), "dev_mode": str(dev_mode).lower()}
    params |= {"sets": ",".join(options.sets), "names": names.value}
    if sort is not None:
        params["sort"] = sort.value
    if options.template is not None:
        params["template"] = options.template
    for name, value in (("quality", quality), ("max_width", max_width), ("scale", scale), ("dpi", dpi)):
        if value is not None:
            params[name] = str(value)
    if wait:
        params |= {"wait": "true", "wait_timeout": f"{wait_timeout:g}"}
    try:
        with _client(url, key, timeout) as client, progress_bars(err) as progress:
            if chosen_only or chosen_out:
                params["images"] = ",".join(_choose_remote(client, order_id, chosen_only, chosen_out))
            _warn_credits(client, order_id, params, options)
            if job:
                outcome = job_archive(client, order_id, params, out, progress, retries=retries, say=progress.console.print)
            else:
                outcome = stream_archive(
                    client, order_id, params, out, progress, retries=retries, say=progress.console.print
                )
    except TransferError as exc:
        raise _fail(str(exc)) from None
    except httpx.TransportError as exc:
        raise _fail(f"Could not reach the service at {url} ({type(exc).__name__})") from None
    raise typer.Exit(_summary(outcome, unit))


def _operator_sets() -> dict[str, SetDefinition]:
    """Direct mode: the sets of the DELIVERY_SETS file, as the service reads them."""
    path = os.environ.get("DELIVERY_SETS", "").strip()
    return load_sets(Path(path)) if path else {}


def _items(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated flag values, as one tuple."""
    return tuple(p.strip() for value in values or () for p in value.split(",") if p.strip())


def _choose_remote(client: httpx.Client, order_id: str, only: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
    """--only/--exclude resolved against the order's photos as the service lists them (ids and names)."""
    response = client.get(f"v1/orders/{order_id}/photos")
    if response.status_code != 200:
        raise TransferError(error_detail(response))
    photos = [p for p in response.json().get("photos", []) if isinstance(p, dict) and p.get("image_id")]
    order = OrderInfo(order_id, None, None, [ImageInfo(str(p["image_id"]), p.get("name"), None, None) for p in photos])
    try:
        return pick(order, only, exclude)
    except InvalidOption as exc:
        raise TransferError(exc.message) from None


def _warn_credits(client: httpx.Client, order_id: str, params: dict[str, str], options: BatchOptions) -> None:
    """Before anything is spent: the service's count for this order, or the rule when it cannot say."""
    full_size = credit_cost(1, options).full_size_sets
    if not full_size:
        return
    try:
        response = client.get(f"v1/orders/{order_id}/photos", params=params)
        text = response.json()["cost"]["text"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        text = None
    err.print(
        f"[bold yellow]{text}[/]" if text else
        f"[bold yellow]Full resolution without dev mode ({', '.join(full_size)}): each photo spends one "
        "Autoenhance credit the first time it is downloaded at full size.[/]"
    )


def _direct(
    order_id: str, options: BatchOptions, out: Path, api_key: str, base_url: str, wait: bool, wait_timeout: float,
    timeout: float, choice: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
) -> Outcome:
    """Direct mode: the engine in this process, straight against Autoenhance.

    Imported here: client mode (and `--help`) should not load the engine and its HTTP stack.
    """
    from app.cli.direct import DirectRun, download_direct, parts_path

    try:
        run = DirectRun(order_id, options, out, api_key, base_url, WaitOptions(wait, wait_timeout), timeout)
        run.only, run.exclude = choice
        with progress_bars(err) as progress:
            return asyncio.run(download_direct(run, progress, progress.console.print))
    except TransferError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        if parts_path(out).is_dir():
            err.print(
                f"[bold yellow]Interrupted.[/] Photos saved so far are kept in {parts_path(out)}; "
                "run the same command again to fetch only the rest."
            )
        else:
            err.print("[bold yellow]Interrupted[/] before any photo was saved.")
        raise typer.Exit(EXIT_INTERRUPTED) from None


class OrderSort(StrEnum):
    by_name = "name"
    by_name_reversed = "-name"
    oldest_first = "date"
    newest_first = "-date"


@cli.command("orders")
def orders(
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", help="Only orders whose name contains this (an address, say).", show_default=False),
    ] = None,
    sort: Annotated[OrderSort, typer.Option("--sort", help="name, -name, date or -date (newest first).")] = (
        OrderSort.newest_first
    ),
    limit: Annotated[int, typer.Option("--limit", min=1, max=60, help="List at most this many.")] = 15,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="AUTOENHANCE_API_KEY", show_envvar=True, show_default=False,
            help="Your Autoenhance API key (direct mode).",
        ),
    ] = None,
    base_url: Annotated[
        str, typer.Option("--base-url", envvar="AUTOENHANCE_BASE_URL", help="The Autoenhance API.")
    ] = DEFAULT_BASE_URL,
    timeout: TimeoutOption = 60.0,
) -> None:
    """List your Autoenhance orders (newest first), or find one by name: id, date, photos and name.

    Prints one order a line on stdout, so `autoenhance-batch orders -s oak | head -1 | cut -d' ' -f1` gives an id.
    """
    if not api_key:
        raise _usage("orders talks to Autoenhance directly: give --api-key or set AUTOENHANCE_API_KEY")
    if search is not None and (not search.strip() or len(search) > 200 or not search.isprintable()):
        raise _usage("--search takes 1-200 printable characters")
    from app.cli.direct import api_version_from_env, direct_client
    from app.cli.orders import find_orders
    from app.errors import ServiceError, UpstreamAuthError

    async def listing() -> tuple[list[Any], bool]:
        async with direct_client(base_url, api_key, timeout, api_version_from_env()) as client:
            return await find_orders(client, search.strip() if search else None, sort=sort.value, limit=limit)

    try:
        found, more = asyncio.run(listing())
    except UpstreamAuthError:
        raise _fail("Autoenhance rejected the API key (check --api-key or AUTOENHANCE_API_KEY)") from None
    except (ServiceError, TransferError) as exc:
        raise _fail(str(exc.message if isinstance(exc, ServiceError) else exc)) from None
    except httpx.TransportError as exc:
        raise _fail(f"Could not reach Autoenhance at {base_url} ({type(exc).__name__})") from None
    if not found:
        err.print(f"No order's name contains {search!r}." if search else "No orders yet.")
        raise typer.Exit(0)
    for order in found:
        typer.echo(order.line())
    if more:
        err.print(f"(more than {len(found)}: narrow with --search or raise --limit)")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", min=1, max=65535, help="Port to listen on.")] = 8000,
    timeout_graceful_shutdown: Annotated[
        int, typer.Option(envvar="SHUTDOWN_GRACE", min=0, help="Seconds streams in flight get to finish on SIGTERM.")
    ] = 30,
    limit_concurrency: Annotated[
        int,
        typer.Option(envvar="LIMIT_CONCURRENCY", min=1, help="Connections plus tasks; over it a request gets 503."),
    ] = 1000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", envvar="WEB_CONCURRENCY", min=1, max=64,
            help="Processes sharing the port and DATA_DIR (one per core pays while streams are CPU-bound).",
        ),
    ] = 1,
) -> None:
    """Run the service (uvicorn; --workers N processes share the port and DATA_DIR). Settings come from the environment and .env.

    Without AUTOENHANCE_API_KEY it runs in demo mode against its built-in simulator. uvicorn runs
    with the limits of app/server.py (header size and time, keep-alive, concurrency; the default of
    --limit-concurrency is its LIMIT_CONCURRENCY, repeated here so that `--help` loads no server).
    """
    import importlib.util

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise _fail(
            "The service needs the server extra: pipx install --force '<this folder>[server]' "
            "(or from a clone: make run)"
        )
    import uvicorn

    from app.server import server_options

    os.environ["WEB_CONCURRENCY"] = str(workers)  # each process reads its share of the budgets from it
    uvicorn.run(
        "app:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        **server_options(limit_concurrency=limit_concurrency),
    )


JobIdArgument = Annotated[str, typer.Argument(help="The job id (from POST /v1/orders/{id}/jobs or --job).", show_default=False)]


@cli.command("cancel")
def cancel_job(job_id: JobIdArgument, url: UrlOption = DEFAULT_URL, key: KeyOption = None, timeout: TimeoutOption = 30.0) -> None:
    """Cancel a job on the service: its downloads stop and its slot frees; a finished job's ZIP is deleted."""
    answer = _ask(url, key, timeout, "DELETE", f"v1/jobs/{job_id}")
    err.print(f"Job {answer['job_id']} is {answer['status']}.")


@cli.command("share")
def share_job(
    job_id: JobIdArgument,
    expires_in: Annotated[
        int, typer.Option("--expires-in", min=60, max=90 * 24 * 3600, help="Seconds the link works (default 7 days).")
    ] = 7 * 24 * 3600,
    revoke: Annotated[
        str | None,
        typer.Option("--revoke", help="Withdraw this share id instead ('all' for every link of the job).", show_default=False),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Print a link to a finished job's ZIP that anyone can open without a key, until it expires."""
    if revoke is not None:
        path = f"v1/jobs/{job_id}/share" + ("" if revoke == "all" else f"/{revoke}")
        answer = _ask(url, key, timeout, "DELETE", path)
        err.print(f"Withdrawn: {', '.join(answer['revoked']) or 'no link'}.")
        return
    answer = _ask(url, key, timeout, "POST", f"v1/jobs/{job_id}/share", params={"expires_in": str(expires_in)})
    typer.echo(answer["url"])
    err.print(f"Works until {answer['expires_at']} (share id {answer['share_id']}; --revoke it to withdraw).")


def _ask(url: str, key: str | None, timeout: float, method: str, path: str, **kwargs: object) -> dict[str, Any]:
    """One call to the service; its JSON, or the one-line error (exit 1)."""
    try:
        with _client(url, key, timeout) as client:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError as exc:
        raise _fail(f"Could not reach the service at {url} ({type(exc).__name__})") from None
    if response.status_code >= 400:
        raise _fail(error_detail(response))
    answer: dict[str, Any] = response.json()
    return answer


@cli.command("sets")
def list_sets(
    url: Annotated[
        str | None,
        typer.Option("--url", "-u", envvar="AUTOENHANCE_BATCH_URL", show_default=False,
                     help="Ask this running service which sets it offers (default: the sets built into this CLI)."),
    ] = None,
    key: KeyOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the delivery sets --sets takes: what each asks Autoenhance for, and which spend credits."""
    if url is None:
        try:
            listed = catalogue(_operator_sets())
        except SetFileError as exc:
            raise _fail(str(exc)) from None
    else:
        try:
            with _client(url, key, timeout) as client:
                response = client.get("v1/api/sets")
        except httpx.TransportError as exc:
            raise _fail(f"Could not reach the service at {url} ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise _fail(error_detail(response))
        listed = response.json()["sets"]
    for item in listed:
        credits = "spends credits" if item.get("spends_credits") else "free"
        typer.echo(f"{item['name']:<10} {item['description']} ({credits})")


@cli.command("sample-order")
def sample_order(
    url: UrlOption = DEFAULT_URL,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token", envvar="ADMIN_TOKEN", show_envvar=True, show_default=False,
            help="The operator's ADMIN_TOKEN (not needed in demo mode).",
        ),
    ] = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Create an order from the bundled sample photos; prints its id (for ORDER=$(...)).

    In live mode this uploads to Autoenhance and spends credits when downloaded at full size.
    """
    headers = {"x-admin-token": admin_token} if admin_token else {}
    try:
        with _client(url, None, timeout, headers) as client:
            response = client.post("v1/api/create-sample-order")
    except httpx.TransportError as exc:
        raise _fail(f"Could not reach the service at {url} ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise _fail(error_detail(response))
    order = response.json()
    err.print(f"Created [bold]{order['name']}[/] with {order['images']} photos.")
    typer.echo(order["order_id"])


def main() -> None:
    if not sys.stdout.isatty():  # rich wraps help to the terminal; give pipes and CI a readable width
        os.environ.setdefault("COLUMNS", "100")
    cli()
