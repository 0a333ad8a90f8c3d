"""`python -m app`: download an order's ZIP from a running service, serve it, make a demo order.

The CLI is one more door onto the same service: it talks HTTP to a running instance (so it works
against a deployed one as well as a local one) and never runs the engine itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from app.cli.transfer import (
    Outcome,
    TransferError,
    error_detail,
    job_archive,
    part_path,
    progress_bars,
    stream_archive,
)
from app.core.models import ImageFormat

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_ERROR = 1
EXIT_PARTIAL = 3

cli = typer.Typer(
    name="python -m app",
    help="Autoenhance Batch: every enhanced image of an Autoenhance.ai order as one ZIP.",
    epilog="Examples:\n\n"
    "  python -m app serve --port 8000\n\n"
    "  python -m app download 7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c -o photos.zip\n\n"
    "  python -m app download $ORDER -o photos.zip --format png --job\n\n"
    "  ORDER=$(python -m app sample-order)",
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


def _summary(outcome: Outcome) -> int:
    size = f"{outcome.bytes / 1_048_576:.1f} MiB" if outcome.bytes >= 1_048_576 else f"{outcome.bytes} bytes"
    if outcome.resumed_from:
        err.print(f"Resumed with Range from byte {', '.join(map(str, outcome.resumed_from))}.")
    counts = ""
    if outcome.downloaded is not None:
        counts = f": {outcome.downloaded} of {outcome.total} images"
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
    order_id: Annotated[str, typer.Argument(help="The Autoenhance order id (a UUID).", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to save the ZIP. Default: autoenhance-<order id>.zip", show_default=False),
    ] = None,
    format: Annotated[ImageFormat, typer.Option("--format", "-f", help="Format of every image.")] = ImageFormat.jpeg,
    quality: Annotated[
        int | None, typer.Option("--quality", "-q", min=1, max=90, help="Image quality 1-90 (default: Autoenhance's).")
    ] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview/--no-preview",
            help="Previews are free. [bold]--no-preview[/] downloads full resolution and [bold]spends credits[/] "
            "unless --dev-mode.",
        ),
    ] = True,
    dev_mode: Annotated[
        bool, typer.Option("--dev-mode", help="Autoenhance dev mode: no credits spent, watermarked images.")
    ] = False,
    job: Annotated[
        bool,
        typer.Option(
            "--job",
            help="Prepare the ZIP as a job on the service, then download the file. Shows per-image progress "
            "and resumes an interrupted download (also on the next run with the same -o).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")] = False,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=50, help="With --job: resume attempts after a cut connection.")
    ] = 5,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Download every enhanced image of an order as one ZIP, with progress (images and bytes).

    Exit status: 0 all images saved; 3 saved, but some images are missing (listed, and in the ZIP's
    report); 1 nothing saved (the reason is printed).
    """
    out = output or Path(f"autoenhance-{order_id[:8]}.zip")
    if out.exists() and not force:
        raise _fail(f"{out} exists; pass --force to overwrite it")
    params = {"format": format.value, "preview": str(preview).lower(), "dev_mode": str(dev_mode).lower()}
    if quality is not None:
        params["quality"] = str(quality)
    if not preview and not dev_mode:
        err.print("[bold yellow]Full resolution without dev mode: each image spends one Autoenhance credit.[/]")
    if not job and part_path(out).exists():
        part_path(out).unlink()  # a streamed archive cannot be resumed; an old .part is garbage
    try:
        with _client(url, key, timeout) as client, progress_bars(err) as progress:
            if job:
                outcome = job_archive(client, order_id, params, out, progress, retries=retries, say=progress.console.print)
            else:
                outcome = stream_archive(client, order_id, params, out, progress)
    except TransferError as exc:
        raise _fail(str(exc)) from None
    except httpx.TransportError as exc:
        raise _fail(f"Could not reach the service at {url} ({type(exc).__name__})") from None
    raise typer.Exit(_summary(outcome))


@cli.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Run the service (uvicorn, one worker). Settings come from the environment and .env.

    Without AUTOENHANCE_API_KEY it runs in demo mode against its built-in simulator.
    """
    import uvicorn

    uvicorn.run("app:app", host=host, port=port, proxy_headers=True)


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
