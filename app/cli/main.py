"""`autoenhance-batch` (or `python -m app`): download an order's ZIP, serve the API, make a demo order.

`download` has two modes. Direct (an Autoenhance API key, no `--url`): the engine runs in this
process straight against Autoenhance (app/cli/direct.py), so a photographer needs nothing but this
command. Client (`--url`): it talks HTTP to a running service, deployed or local, which does the work.
"""

from __future__ import annotations

import asyncio
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import Progress

from app.cli.destination import Destination, DestinationError
from app.cli.partfile import link_in_the_way
from app.cli.shown import shown
from app.cli.transfer import (
    Outcome,
    TransferError,
    error_detail,
    job_archive,
    part_path,
    progress_bars,
    read_manifest,
    refused,
    state_path,
    stream_archive,
)
from app.core.delivery.selection import pick
from app.core.delivery.set_file import SetFileError, load_sets
from app.core.delivery.sets import (
    MAX_DPI,
    MIN_DPI,
    SET_HELP,
    catalogue,
    credit_cost,
    definitions,
    files_and_photos,
    parse_sets,
)
from app.core.delivery.templates import checked_template
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
from app.core.network.tls import client_context
from app.core.wait import MAX_WAIT_SECONDS, WaitOptions
from app.errors import InvalidOption, InvalidOrderId

if TYPE_CHECKING:
    from app.cli.direct import DirectRun
    from app.cli.topup import EarlierArchive

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_BASE_URL = "https://api.autoenhance.ai"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
NO_KEY_NO_SERVICE = (
    f"No --api-key given and no Autoenhance Batch service answers at {DEFAULT_URL}. "
    "To download your order straight from Autoenhance: --api-key KEY (or set AUTOENHANCE_API_KEY). "
    "To try the tool without a key: autoenhance-batch demo. To use a running service: --url URL."
)



def _plain_flags(params: list[Any]) -> list[Any]:
    """Typer's help prints a flag without a metavar (its own --help too) as `--force <bool>`, as if it
    took a value; a flag takes none, so its row shows none."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


cli = typer.Typer(
    cls=_Group,
    name="autoenhance-batch",
    help="Autoenhance Batch: every enhanced photo of an Autoenhance.ai order as one ZIP.",
    epilog="Examples (from a clone, `python -m app` works the same):\n\n"
    "  autoenhance-batch demo    (no key needed: a sample order as a ZIP)\n\n"
    "  autoenhance-batch download 7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c --api-key $KEY -o Photos/\n\n"
    "  autoenhance-batch download $ORDER --sets mls,original --names sequence --no-preview --yes\n\n"
    "  autoenhance-batch download $ORDER --url http://127.0.0.1:8000 --format png --job\n\n"
    "  autoenhance-batch serve --port 8000\n\n"
    "  ORDER=$(autoenhance-batch sample-order)",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)


def _show_version(value: bool) -> None:
    if value:
        from app.version import __version__

        typer.echo(f"autoenhance-batch {__version__}")
        raise typer.Exit(0)


def _quiet_libraries() -> None:
    """The command says what happened in its own words: no retry or per-image log lines from the
    libraries underneath (stamina's retries, the engine's warnings), which a person cannot act on."""
    import logging

    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([])
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", metavar="", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    _quiet_libraries()


def _between(low: float, high: float | None = None) -> Callable[[Any], Any]:
    """A range check with a plain message ('1-90'), in place of click's '[1<=x<=90]' notation."""

    def check(value: Any) -> Any:
        if value is not None and (value < low or (high is not None and value > high)):
            raise typer.BadParameter(f"must be {low:g}-{high:g}" if high is not None else f"must be at least {low:g}")
        return value

    return check


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
    float,
    typer.Option("--timeout", metavar="SECONDS", callback=_between(1),
                 help="Seconds to wait for the service to answer or send more bytes."),
]


def _client(url: str, key: str | None, timeout: float, extra_headers: dict[str, str] | None = None) -> httpx.Client:
    headers = {"user-agent": "autoenhance-batch-cli"} | (extra_headers or {})
    if key:
        headers["x-api-key"] = key
    return httpx.Client(
        base_url=url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), trust_env=True,
        verify=client_context(),
    )


def _fail(message: str) -> typer.Exit:
    """Nothing (or nothing usable) was saved: one line, exit 1. `message` is text, never markup."""
    err.print(f"[bold red]Error:[/] {shown(message)}")
    return typer.Exit(EXIT_ERROR)


def _usage(message: str) -> typer.Exit:
    """A wrong command line: one line, exit 2, and nothing asked of anyone. `message` is text, never markup."""
    err.print(f"[bold red]Error:[/] {shown(message)}")
    return typer.Exit(EXIT_USAGE)


def _output_path(output: Path | None, default_name: str, force: bool) -> Path:
    """Where the ZIP goes, checked before anything is asked of anyone."""
    out = output or Path(default_name)
    if not out.parent.is_dir():
        raise _usage(f"The folder {out.parent} does not exist; create it or choose another -o")
    if out.is_dir():
        out = out / default_name
    return _checked_out(out, force)


def _earlier_partial(out: Path, order_id: str, options: BatchOptions) -> EarlierArchive | None:
    """`out` when it is a partial ZIP of this order and options (a rerun then tops it up)."""
    if not out.is_file() or out.is_symlink():
        return None
    from app.cli.topup import earlier_archive

    earlier = earlier_archive(out, order_id, options)
    if earlier is not None and earlier.failed == 0:
        raise _usage(f"{out} already holds all {earlier.total} files of this order; pass --force to download it again")
    return earlier


def _summary(outcome: Outcome, unit: str = "images") -> int:
    size = decimal(outcome.bytes)  # the same units (kB, MB, GB) as the progress bars
    if outcome.resumed_from:
        err.print(f"Resumed with Range from byte {', '.join(map(str, outcome.resumed_from))}.")
    counts = ""
    if outcome.downloaded is not None:
        counts = f": {outcome.downloaded} of {outcome.total} {unit}"
    if outcome.failed:
        err.print(f"[bold yellow]Saved {shown(outcome.path)} ({size}){counts}; {outcome.failed} could not be included:[/]")
        for failure in outcome.failures:
            err.print(f"  - {shown(failure.get('name') or failure.get('image_id'))}: {shown(failure.get('reason'))}")
        err.print("  (details and how to recover: _download_report.txt inside the ZIP)")
        return EXIT_PARTIAL
    err.print(f"[bold green]Saved {shown(outcome.path)} [/]({size}){counts}.")
    return 0


@cli.command(cls=_Command)
def download(
    order_id: Annotated[
        str,
        typer.Argument(
            help="The Autoenhance order id (a UUID), or its name (direct mode: it must pick one order).",
            show_default=False, metavar="ORDER",
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="FILE|FOLDER/", show_default=False,
            help="Where to save the ZIP: a file, or a folder (an existing one, or a new one ending in /) that gets "
            "'<order name>.zip'. Default: '<order name>.zip' in the current folder.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="AUTOENHANCE_API_KEY", show_envvar=True, show_default=False, metavar="KEY",
            help="Direct mode: your Autoenhance API key; this command downloads straight from Autoenhance.",
        ),
    ] = None,
    base_url: Annotated[
        str,
        typer.Option("--base-url", envvar="AUTOENHANCE_BASE_URL", metavar="URL", help="Direct mode: the Autoenhance API."),
    ] = DEFAULT_BASE_URL,
    sets: Annotated[
        str,
        typer.Option(
            "--sets", "-s", metavar="SET,SET",
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
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="jpeg|png|webp|avif|jxl", help="Format of the full set (jpg: jpeg).")
    ] = ImageFormat.jpeg.value,
    quality: Annotated[
        int | None,
        typer.Option("--quality", "-q", metavar="1-90", callback=_between(1, 90),
                     help="Image quality 1-90 (default: Autoenhance's)."),
    ] = None,
    max_width: Annotated[
        int | None,
        typer.Option("--max-width", metavar="PIXELS", callback=_between(1, 20000),
                     help="Full set: at most this many pixels wide (1-20000)."),
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option("--scale", metavar="0.01-1", callback=_between(0.01, 1.0), help="Full set: scale factor 0.01-1."),
    ] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview/--no-preview", metavar="",
            help="Previews are free. [bold]--no-preview[/] downloads full resolution and [bold]spends credits[/] "
            "unless --dev-mode (the mls set is always full resolution).",
        ),
    ] = True,
    dev_mode: Annotated[
        bool,
        typer.Option("--dev-mode/--no-dev-mode", metavar="",
                     help="Autoenhance dev mode: no credits spent, watermarked images."),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", metavar="",
                     help="Wait until Autoenhance has finished enhancing the order (see --wait-timeout)."),
    ] = False,
    wait_timeout: Annotated[
        float,
        typer.Option("--wait-timeout", metavar="SECONDS", callback=_between(1, MAX_WAIT_SECONDS),
                     help=f"With --wait: seconds at most (1-{MAX_WAIT_SECONDS:g})."),
    ] = 60.0,
    dpi: Annotated[
        int | None,
        typer.Option("--dpi", metavar=f"{MIN_DPI}-{MAX_DPI}", callback=_between(MIN_DPI, MAX_DPI),
                     help="Full set: dots per inch written into each file."),
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
            "--job/--no-job", metavar="",
            help="Client mode: prepare the ZIP as a job on the service, then download the file. Shows per-image "
            "progress while the job runs. Either way a cut download resumes (also on the next run with the same -o).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", metavar="", help="Overwrite the output file if it exists (and start over).")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", metavar="",
            help="Agree to spend credits without being asked. Needed when no terminal can ask "
            "(a script, CI) and a set is full resolution without --dev-mode.",
        ),
    ] = False,
    retries: Annotated[
        int,
        typer.Option("--retries", metavar="0-50", callback=_between(0, 50), help="Resume attempts after a cut connection."),
    ] = 5,
    url: ServiceUrlOption = None,
    key: KeyOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Download every enhanced photo of an order as one ZIP, with progress (files and bytes).

    With --api-key (or AUTOENHANCE_API_KEY) and no --url it downloads straight from Autoenhance;
    stopped and run again, it keeps the photos already saved and fetches only the rest; run again
    after some photos were missing, it keeps the ZIP's files and fetches only the missing ones
    (with --url too: the service is asked for those photos only). No key yet? autoenhance-batch demo

    Exit status: 0 all files saved; 3 saved, but some files are missing (listed, and in the ZIP's
    report); 1 nothing saved (the reason is printed); 2 the command line is wrong (nothing was
    asked); 130 interrupted with Ctrl+C (what arrived is kept: run the same command again).
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
            format=_image_format(format), quality=quality, preview=preview, dev_mode=dev_mode, sets=chosen_sets,
            names=names, custom=definitions(chosen_sets, operator_sets), max_width=max_width, scale=scale,
            sort=sort.value if sort is not None else None, template=checked_template(template), dpi=dpi,
        )
        destination = Destination.parse(output)
    except InvalidOrderId as exc:
        raise _usage(f"{exc.message} (an order's name works in direct mode, with --api-key)") from None
    except InvalidOption as exc:
        raise _usage(exc.message) from None
    except (SetFileError, DestinationError) as exc:
        raise _usage(str(exc)) from None
    chosen_only, chosen_out = _items(only), _items(exclude)
    unit = "images" if options.sets == ("full",) else "files"
    if url is None and api_key and job:
        raise _usage("--job prepares the ZIP on a service: give its --url, or leave --job out to download directly")
    _require_consent(options, yes)
    if url is None and api_key:
        raise typer.Exit(_download_direct(order_id, options, destination, api_key, base_url, wait, wait_timeout,
                                          timeout, force, yes, unit, (chosen_only, chosen_out)))
    asked_for_service = url is not None
    url = _checked_url(url, "--url") if url is not None else DEFAULT_URL
    params = {"format": options.format.value, "preview": str(preview).lower(), "dev_mode": str(dev_mode).lower()}
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
    out = destination.file or destination.folder / f"autoenhance-{order_id[:8]}.zip"
    if destination.file is not None:  # known already: checked before any request
        choosing = bool(chosen_only or chosen_out)
        out = _checked_out(destination.file, force or _may_top_up(destination.file, order_id, options, choosing))
    topping_up = False
    try:
        with _client(url, key, timeout) as client:
            if chosen_only or chosen_out:
                params["images"] = ",".join(_choose_remote(client, order_id, chosen_only, chosen_out))
            credits, order_name = _preface(client, order_id, params, options)
            out = destination.file or destination.place(order_name, order_id)
            chosen = replace(options, images=tuple(params["images"].split(","))) if "images" in params else options
            earlier = None if force else _earlier_partial(out, order_id, chosen)
            out = _checked_out(out, force or earlier is not None)
            topping_up = earlier is not None
            if earlier is not None and credits:  # only the missing photos are downloaded
                credits = credit_cost(len(earlier.missing), options).credits
            if credits and not yes:
                _ask_to_spend(credits)
            with progress_bars(err) as progress:
                if earlier is not None:
                    outcome = _top_up(client, order_id, params, earlier, progress, job, retries)
                else:
                    outcome = _fetch(client, order_id, params, out, progress, job, retries)
    except TransferError as exc:
        raise _fail(str(exc) + _hint(exc.status, url, explained=exc.explained)) from None
    except KeyboardInterrupt:
        _interrupted_client(out, job, topping_up)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except httpx.TransportError as exc:
        if not asked_for_service:  # no key, no --url, and nothing runs on this computer: say what to do
            raise _usage(NO_KEY_NO_SERVICE) from None
        raise _fail(
            f"Could not reach the service at {url} ({type(exc).__name__}): check --url and that the service runs "
            "(autoenhance-batch serve)"
        ) from None
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


def _image_format(value: str) -> ImageFormat:
    wanted = value.strip().lower()
    try:
        return ImageFormat("jpeg" if wanted == "jpg" else wanted)
    except ValueError:
        raise InvalidOption(
            f"Unknown format {value[:20]!r}: choose from {'|'.join(f.value for f in ImageFormat)}"
        ) from None


def _checked_url(value: str, flag: str) -> str:
    """An http(s) URL with a host, or a usage error that says what one looks like. A service URL may
    be given with its /v1 (the API's prefix): the command adds that itself."""
    try:
        parsed = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        example = DEFAULT_BASE_URL if flag == "--base-url" else DEFAULT_URL
        raise _usage(f"{flag} {value!r} is not a web address: it starts with https:// or http://, e.g. {example}")
    text = str(parsed).rstrip("/")
    return text.removesuffix("/v1") if flag == "--url" else text


def _hint(status: int | None, url: str, *, explained: bool = False) -> str:
    """What to do about a service's refusal, where the status says it. A 404 the service explained
    (no such order) is about the order; only a bare one suggests the address is not the service."""
    if status == 401:
        return (
            ". This service needs its service key: pass --key KEY (or set AUTOENHANCE_BATCH_KEY); the operator set "
            "it as SERVICE_API_KEY"
        )
    if status == 403:
        return ". The service key (--key) was not accepted, or this service does not allow that for anyone"
    if status == 404 and not explained and "/v1/" not in url:
        return f". Is {url} an Autoenhance Batch service? --url is its address, e.g. {DEFAULT_URL}"
    return ""


def _checked_out(out: Path, force: bool) -> Path:
    """The ZIP's path once known: an existing file needs --force; no link is written through."""
    if out.is_dir():
        raise _usage(f"{out} is a folder; give a file name such as {out / 'photos.zip'}, or the folder ending in /")
    if out.exists() and not force:
        raise _usage(f"{out} exists; pass --force to overwrite it, or choose another -o")
    fresh = out.with_name(out.name + ".missing.zip")  # client mode's top-up (app/cli/remote_topup.py)
    link = link_in_the_way(
        part_path(out), state_path(out), out.with_name(out.name + ".parts"), fresh, part_path(fresh), state_path(fresh)
    )
    if link is not None:
        raise _usage(f"{link} is a link; this command never writes through one: remove it or choose another -o")
    return out


def _download_direct(
    order_id: str, options: BatchOptions, destination: Destination, api_key: str, base_url: str, wait: bool,
    wait_timeout: float, timeout: float, force: bool, yes: bool, unit: str,
    choice: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
) -> int:
    """Direct mode: the path is chosen once the order (and its name) is known, before any download."""
    from app.cli.direct import DirectRun, parts_path
    from app.cli.saved_parts import FolderKeep

    base_url = _checked_url(base_url, "--base-url")
    provisional = destination.file or destination.folder / f"autoenhance-{order_id[:8]}.zip"
    try:  # reads AUTOENHANCE_API_VERSION: a malformed one is one line, not a traceback
        run = DirectRun(order_id, options, provisional, api_key, base_url, WaitOptions(wait, wait_timeout), timeout)
    except TransferError as exc:
        raise _fail(str(exc)) from None
    run.only, run.exclude = choice  # --only/--exclude: resolved once the order is read

    def place(order_name: str | None) -> None:
        out = destination.place(order_name, order_id)
        run.earlier = None if force else _earlier_partial(out, order_id, options)
        run.out = _checked_out(out, force or run.earlier is not None)
        refusal = FolderKeep.refusal(parts_path(run.out))
        if refusal:
            raise _usage(refusal)

    if destination.file is not None:
        place(None)  # the path is known already: checked before anything is asked of Autoenhance
    else:
        run.place = place
    if _spends(options) and not yes:
        run.confirm = _ask_to_spend
    return _summary(_direct(run), unit)


def _fetch(
    client: httpx.Client, order_id: str, params: dict[str, str], out: Path, progress: Progress, job: bool, retries: int
) -> Outcome:
    say = progress.console.print
    if job:
        return job_archive(client, order_id, params, out, progress, retries=retries, say=say)
    return stream_archive(client, order_id, params, out, progress, retries=retries, say=say)


def _may_top_up(out: Path, order_id: str, options: BatchOptions, choosing: bool) -> bool:
    """Before any request: `out` is a partial ZIP of this order and options (a complete one is a usage
    error here). With --only/--exclude, the photos are known once the service has resolved them: until
    then, any ZIP of this order may be."""
    if not choosing:
        return _earlier_partial(out, order_id, options) is not None
    manifest = read_manifest(out) if out.is_file() and not out.is_symlink() else None
    return bool(manifest and manifest.get("order_id") == order_id)


def _top_up(
    client: httpx.Client, order_id: str, params: dict[str, str], earlier: EarlierArchive, progress: Progress,
    job: bool, retries: int,
) -> Outcome:
    """Client mode after a partial ZIP: the service sends the missing photos only (`images=`), and the
    ZIP is rebuilt from its own files and those (app/cli/remote_topup.py)."""
    from app.cli.remote_topup import fresh_path, merge

    out, say = earlier.path, progress.console.print
    say(
        f"{shown(out)} holds {len(earlier.members)} of its {earlier.total} files from an earlier run: they are "
        f"kept, and only the missing ones are fetched"
    )
    fresh = fresh_path(out)
    try:
        _fetch(client, order_id, params | {"images": ",".join(earlier.missing)}, fresh, progress, job, retries)
    except TransferError as exc:
        if exc.status != 422:  # nothing came because none could: the ZIP stays as it was
            raise
        say(f"None of the missing files could be downloaded now: {shown(str(exc))}")
        return Outcome(out, out.stat().st_size, earlier.total, len(earlier.members), earlier.failed, earlier.failures)
    listing = client.get(f"v1/orders/{order_id}/photos", params={k: v for k, v in params.items() if k != "images"})
    if listing.status_code != 200:
        raise refused(listing)
    try:
        whole = merge(out, fresh, part_path(out), list(listing.json().get("photos") or []))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:  # a damaged earlier ZIP, say
        raise TransferError(
            f"{out} could not be read back to add the missing files ({exc}); it is left as it was: pass --force "
            "to download the whole order again"
        ) from None
    finally:
        fresh.unlink(missing_ok=True)
    new = whole.downloaded - whole.reused
    say(f"{whole.reused} of the files came from the earlier run; {new} {'was' if new == 1 else 'were'} downloaded now")
    failures: list[dict[str, Any]] = [dict(f.as_dict()) for f in whole.failures]
    return Outcome(out, out.stat().st_size, whole.total, whole.downloaded, whole.failed, failures)


def _interrupted_client(out: Path, job: bool, topping_up: bool = False) -> None:
    """Ctrl+C in client mode: say what is kept and how to go on."""
    if topping_up:  # the missing photos' own ZIP was on its way
        from app.cli.remote_topup import fresh_path

        out = fresh_path(out)
    part, state = part_path(out), state_path(out)
    kept = part.stat().st_size if part.is_file() else 0
    if state.is_file() and kept:
        err.print(
            f"[bold yellow]Interrupted.[/] {decimal(kept)} kept in {shown(part)}; "
            "run the same command again to download only the rest."
        )
    elif state.is_file() and job:
        err.print(
            "[bold yellow]Interrupted.[/] The job goes on on the service; run the same command again to follow "
            "it and download its ZIP."
        )
    else:
        err.print("[bold yellow]Interrupted[/] before anything could be kept; run the same command again to start over.")


def _preface(
    client: httpx.Client, order_id: str, params: dict[str, str], options: BatchOptions
) -> tuple[int, str | None]:
    """Client mode, before anything is fetched: the order's name and size, and what it would cost.

    Returns (the credits the service counts, or -1 when it cannot say and the options spend credits;
    the order's name, when the service said it). A TransportError is left to the caller.
    """
    full_size = credit_cost(1, options).full_size_sets
    try:
        response = client.get(f"v1/orders/{order_id}/photos", params=params)
        order = response.json() if response.status_code == 200 else None
        photos = len(order["photos"]) if order else None
    except (httpx.DecodingError, ValueError, KeyError, TypeError):
        order, photos = None, None
    if order is not None and photos is not None:
        err.print(f"Order {shown(order.get('name') or order_id)}: {files_and_photos(photos, options.sets)}")
    name = order.get("name") if isinstance(order, dict) and isinstance(order.get("name"), str) else None
    if not full_size:
        return 0, name
    text = (order or {}).get("cost", {}).get("text") if isinstance(order, dict) else None
    err.print(
        f"[bold yellow]{shown(text)} [/]" if text else
        f"[bold yellow]Full resolution without dev mode ({', '.join(full_size)}): each photo spends one "
        "Autoenhance credit the first time it is downloaded at full size.[/]"
    )
    return (credit_cost(photos, options).credits if photos is not None else -1), name


def _interactive() -> bool:
    """A person at a terminal can be asked (stdin and stderr are both terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _spends(options: BatchOptions) -> bool:
    return bool(credit_cost(1, options).full_size_sets)


def _require_consent(options: BatchOptions, yes: bool) -> None:
    """Without a terminal to ask, spending credits needs --yes: refused before any request (exit 2)."""
    if _spends(options) and not yes and not _interactive():
        sets = ", ".join(credit_cost(1, options).full_size_sets)
        raise _usage(
            f"Full-resolution sets without --dev-mode ({sets}) spend Autoenhance credits (up to one per photo). "
            "Nothing was asked or spent: pass --yes to agree, or add --dev-mode (watermarked, free), "
            "or use previews (the default for the full set)."
        )


def _ask_to_spend(credits: int, progress: Progress | None = None) -> None:
    """In a terminal: `[y/N]` before the first credit is spent; anything but yes stops here (exit 1)."""
    if progress is not None:
        progress.stop()  # the live bars would draw over the question
    what = f"up to {credits} Autoenhance credit{'s' * (credits != 1)}" if credits >= 0 else "Autoenhance credits"
    try:
        agreed = typer.confirm(f"Spend {what}?", default=False, err=True)
    except typer.Abort:  # Ctrl+D or Ctrl+C at the question: a no
        agreed = False
    if not agreed:
        err.print("Stopped: nothing was downloaded and no credit was spent.")
        raise typer.Exit(EXIT_ERROR)
    if progress is not None:
        progress.start()


def _direct(run: DirectRun) -> Outcome:
    """Direct mode: the engine in this process, straight against Autoenhance (or the demo's simulator).

    Imported here: client mode (and `--help`) should not load the engine and its HTTP stack.
    """
    from app.cli.direct import download_direct, parts_path

    out = run.out
    try:
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


@cli.command("orders", cls=_Command)
def orders(
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", help="Only orders whose name contains this (an address, say).", show_default=False),
    ] = None,
    sort: Annotated[OrderSort, typer.Option("--sort", help="name, -name, date or -date (newest first).")] = (
        OrderSort.newest_first
    ),
    limit: Annotated[int, typer.Option("--limit", metavar="1-60", callback=_between(1, 60), help="List at most this many.")] = 15,
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


@cli.command(cls=_Command)
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to save the demo ZIP (a folder: the file goes inside it).")
    ] = Path("autoenhance-demo.zip"),
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
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")] = False,
) -> None:
    """Try it without a key: download a sample order of 3 photos as one ZIP, with progress.

    The bundled simulator stands in for Autoenhance inside this command: no key, no account, no
    service, nothing charged and nothing sent anywhere. Then, with your key:
    autoenhance-batch download ORDER_ID --api-key KEY
    """
    from app.cli.demo import demo_run

    try:
        options = BatchOptions(sets=parse_sets(sets), names=names)
    except InvalidOption as exc:
        raise _usage(exc.message) from None
    out = _output_path(output, "autoenhance-demo.zip", force)
    try:  # reads AUTOENHANCE_API_VERSION: a malformed one is one line, not a traceback
        run, order_id = demo_run(options, out, timeout=60.0)
    except TransferError as exc:
        raise _fail(str(exc)) from None
    code = _summary(_direct(run), "images" if options.sets == ("full",) else "files")
    err.print(
        f"That was the demo order {order_id} from the simulator. With your Autoenhance API key, the same "
        "for a real order: [bold]autoenhance-batch download ORDER_ID --api-key KEY[/]"
    )
    raise typer.Exit(code)


@cli.command(cls=_Command)
def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", metavar="1-65535", callback=_between(1, 65535), help="Port to listen on.")] = 8000,
    timeout_graceful_shutdown: Annotated[
        int, typer.Option(envvar="SHUTDOWN_GRACE", metavar="SECONDS", callback=_between(0), help="Seconds streams in flight get to finish on SIGTERM.")
    ] = 30,
    limit_concurrency: Annotated[
        int,
        typer.Option(envvar="LIMIT_CONCURRENCY", metavar="N", callback=_between(1), help="Connections plus tasks; over it a request gets 503."),
    ] = 1000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", envvar="WEB_CONCURRENCY", metavar="1-64", callback=_between(1, 64),
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
            "The service needs the server extra: pipx install --force 'autoenhance-batch[server]' "
            "(from a clone: pipx install --force '.[server]', or make run). To try the tool without it: "
            "autoenhance-batch demo"
        )
    _refuse_a_taken_port(host, port)
    data_dir = _serve_data_dir()
    import uvicorn

    from app.config import Settings
    from app.server import server_options

    os.environ["WEB_CONCURRENCY"] = str(workers)  # each process reads its share of the budgets from it
    settings = Settings()
    mode = "live (AUTOENHANCE_API_KEY is set)" if not settings.demo_mode else "demo (no AUTOENHANCE_API_KEY: the built-in simulator)"
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    err.print(
        f"Autoenhance Batch on [bold]http://{shown(shown_host)}:{port}/ [/](the page; API docs at /docs), "
        f"mode: {mode}.\nData folder: {shown(data_dir)} (set DATA_DIR to change it). Stop with Ctrl+C."
    )
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


@cli.command("cancel", cls=_Command)
def cancel_job(job_id: JobIdArgument, url: UrlOption = DEFAULT_URL, key: KeyOption = None, timeout: TimeoutOption = 30.0) -> None:
    """Cancel a job on the service: its downloads stop and its slot frees; a finished job's ZIP is deleted."""
    answer = _ask(url, key, timeout, "DELETE", f"v1/jobs/{job_id}")
    err.print(f"Job {answer['job_id']} is {answer['status']}.")


@cli.command("share", cls=_Command)
def share_job(
    job_id: JobIdArgument,
    expires_in: Annotated[
        int, typer.Option("--expires-in", metavar="SECONDS", callback=_between(60, 90 * 24 * 3600),
                     help="Seconds the link works: 60 up to 90 days (default 7 days).")
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


@cli.command("sets", cls=_Command)
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


def _refuse_a_taken_port(host: str, port: int) -> None:
    """'Address already in use' said plainly, before the server starts (not inside a log line)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _fail(
                    f"Port {port} on {host} is already in use (another autoenhance-batch serve, or another "
                    f"program): stop it, or choose another port with --port"
                ) from None
            raise _fail(f"Cannot listen on {host}:{port} ({exc.strerror})") from None


def _serve_data_dir() -> Path:
    """DATA_DIR as set (environment or .env); unset, a per-user folder rather than `data/` in whatever
    folder `serve` was started from (XDG_DATA_HOME, else ~/.local/share/autoenhance-batch)."""
    dotenv = Path(".env")
    configured = os.environ.get("DATA_DIR") or (
        dotenv.is_file() and any(line.strip().startswith("DATA_DIR=") for line in dotenv.read_text().splitlines())
    )
    if configured:
        from app.config import Settings

        return Settings().data_dir.resolve()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    folder = base / "autoenhance-batch"
    os.environ["DATA_DIR"] = str(folder)  # the app reads its settings from the environment
    return folder


@cli.command("sample-order", cls=_Command)
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
    err.print(f"Created [bold]{shown(order['name'])} [/]with {order['images']} photos.")
    typer.echo(order["order_id"])


def main() -> None:
    if not sys.stdout.isatty():  # rich wraps help to the terminal; give pipes and CI a readable width
        os.environ.setdefault("COLUMNS", "100")
    cli()
