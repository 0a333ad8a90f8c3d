"""The CLI's two ways of getting an archive from a running service, with progress.

- `stream_archive`: GET the streamed ZIP; images are counted as their members go past
  (`ZipMemberCounter`). The service records each streamed archive's layout and names it in the
  ETag, so a cut stream resumes like a file: `Range: bytes=N-` + `If-Range: <ETag>`, within one
  run and across runs (`<out>.part` + `<out>.part.json`). A service that cannot resume it (the
  layout expired, or Autoenhance now serves other bytes) answers the whole archive again.
- `job_archive`: POST a job, follow its progress, then download the finished file, resuming with
  `Range` (+ `If-Range` on its ETag) after a cut, within one run and across runs: `<out>.part`
  holds the bytes so far and `<out>.part.json` the job it belongs to.
"""

from __future__ import annotations

import contextlib
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from app.cli.partfile import damaged_member, intact_length, open_own, write_own_text
from app.cli.shown import shown
from app.cli.zipwatch import ZipMemberCounter
from app.core.network.tls import client_context

CHUNK = 256 * 1024
POLL_SECONDS = (0.25, 0.5, 1.0)
"""Job status polls: quick at first (small orders finish in a moment), then once a second."""
FINISHED = frozenset({"completed", "completed_with_errors", "complete"})
"""A job with a ZIP to download (`complete`: what services before the webhook's words said)."""


class TransferError(Exception):
    """A failure the CLI reports in one sentence (and exits non-zero); `status`: the service's, if it answered.
    `explained`: the answer said what was wrong (a specific JSON `detail`), so no guess about the address helps."""

    def __init__(self, message: str, status: int | None = None, *, explained: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.explained = explained


GENERIC_DETAILS = ("Not Found", "Method Not Allowed")
"""What any FastAPI or Starlette server says of a route it does not have: the address may be wrong."""


def refused(response: httpx.Response) -> TransferError:
    """The service said no: its detail, with the status kept for the command's advice."""
    detail = service_detail(response)
    return TransferError(
        _described(response, detail), response.status_code,
        explained=detail is not None and detail not in GENERIC_DETAILS,
    )


@dataclass
class Outcome:
    path: Path
    bytes: int
    total: int | None = None
    downloaded: int | None = None
    failed: int | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)  # byte offsets of Range requests sent


def service_detail(response: httpx.Response) -> str | None:
    """The answer's JSON `detail` when it is text, else None."""
    try:
        response.read()
        detail = response.json().get("detail")
    except (ValueError, AttributeError, httpx.HTTPError):
        return None
    return detail if isinstance(detail, str) and detail else None


def error_detail(response: httpx.Response) -> str:
    """The service's JSON `detail`, or the status line."""
    return _described(response, service_detail(response))


def _described(response: httpx.Response, detail: str | None) -> str:
    if detail is not None:
        return f"{detail} (HTTP {response.status_code})"
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


class _PerRow(ProgressColumn):
    """One column, rendered per row's unit: a count for images, sizes and speed for bytes."""

    def __init__(self, images: ProgressColumn | None, data: ProgressColumn | None) -> None:
        super().__init__()
        self._images, self._data = images, data

    def render(self, task: Task) -> Any:
        column = self._data if task.fields.get("unit") == "bytes" else self._images
        return column.render(task) if column is not None else Text("")


def progress_bars(console: Any) -> Progress:
    """Two rows: images (done/total, failures noted) and bytes (size, speed)."""
    return Progress(
        TextColumn("[bold]{task.description:<7}"),
        BarColumn(),
        _PerRow(MofNCompleteColumn(), DownloadColumn()),
        _PerRow(None, TransferSpeedColumn()),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )


def image_and_byte_tasks(progress: Progress, total_images: int | None, total_bytes: int | None) -> tuple[TaskID, TaskID]:
    images = progress.add_task("images", total=total_images or None, note="", unit="images")
    data = progress.add_task("bytes", total=total_bytes, note="", unit="bytes")
    return images, data


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The archive's own account of itself (`_manifest.json`), for the summary."""
    try:
        with zipfile.ZipFile(path) as archive:
            data: dict[str, Any] = json.loads(archive.read("_manifest.json"))
            return data
    except (KeyError, zipfile.BadZipFile, ValueError, OSError):
        return None


def _with_manifest(outcome: Outcome) -> Outcome:
    manifest = read_manifest(outcome.path)
    if manifest:
        outcome.total = manifest.get("total", outcome.total)
        outcome.downloaded = manifest.get("downloaded", outcome.downloaded)
        outcome.failed = manifest.get("failed", outcome.failed)
        outcome.failures = list(manifest.get("failures") or [])
    return outcome


def part_path(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".part.json")


# -- streamed ----------------------------------------------------------------------------------------


def stream_archive(
    client: httpx.Client,
    order_id: str,
    params: dict[str, str],
    out: Path,
    progress: Progress,
    *,
    retries: int = 5,
    say: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    part = part_path(out)
    url = str(httpx.URL(f"v1/orders/{order_id}/images", params=params))
    state = _load_state(out, order_id, params, kind="stream")
    if state is not None and state.get("etag") and part.is_file():  # a run cut earlier: resume it
        say(f"Resuming the streamed archive ({part.stat().st_size} bytes already here)")
        return _resume_stream(client, url, out, state, progress, retries, say, sleep)
    written = 0
    started = False
    etag: str | None = None
    try:
        with client.stream("GET", url) as response:
            started = True
            if response.status_code != 200:
                raise refused(response)
            total_images = int(response.headers.get("x-total-images", "0") or 0)
            if response.headers.get("accept-ranges") == "bytes":
                etag = response.headers.get("etag")
            if etag:  # resumable: recorded now, so even a Ctrl+C leaves a .part the next run continues
                _save_state(out, {"kind": "stream", "order_id": order_id, "params": params, "etag": etag})
            length = response.headers.get("content-length")
            images, data = image_and_byte_tasks(progress, total_images, int(length) if length else None)
            counter = ZipMemberCounter()
            with open_own(part, "wb") as file:
                for chunk in response.iter_bytes(CHUNK):
                    file.write(chunk)
                    written += len(chunk)
                    counter.feed(chunk)
                    progress.update(images, completed=counter.images)
                    progress.update(data, completed=written)
            progress.update(data, total=written)
    except httpx.TransportError as exc:
        if not started:
            part.unlink(missing_ok=True)
            raise  # never connected: the caller says so
        if etag is None:
            part.unlink(missing_ok=True)
            raise TransferError(
                f"The stream was cut after {written} bytes ({type(exc).__name__}) and this service cannot "
                "resume it. Run again, or use --job."
            ) from exc
        state = {"kind": "stream", "order_id": order_id, "params": params, "etag": etag}
        _save_state(out, state)  # kept with the .part: the next run resumes even if this one stops here
        if retries <= 0:
            raise TransferError(
                f"The stream was cut after {written} bytes ({type(exc).__name__}); they are kept in "
                f"{part.name}: run the same command again to resume"
            ) from exc
        say(f"Connection lost at {written} bytes ({type(exc).__name__}); resuming")
        return _resume_stream(client, url, out, state, progress, retries, say, sleep)
    except KeyboardInterrupt:
        if etag is None:  # a service that cannot resume: the bytes are of no use to a rerun
            part.unlink(missing_ok=True)
        raise
    except BaseException:
        part.unlink(missing_ok=True)
        state_path(out).unlink(missing_ok=True)
        raise
    state_path(out).unlink(missing_ok=True)
    part.replace(out)
    outcome = _with_manifest(Outcome(out, written, total=total_images))
    progress.update(images, total=outcome.total or None, completed=outcome.downloaded or counter.images)
    return outcome


def _resume_stream(
    client: httpx.Client,
    url: str,
    out: Path,
    state: dict[str, Any],
    progress: Progress,
    retries: int,
    say: Callable[[str], None],
    sleep: Callable[[float], None],
) -> Outcome:
    """The rest of a cut stream, as a resumable file (a 200 instead of a 206 starts it over)."""
    _, data = image_and_byte_tasks(progress, None, None)
    outcome = _resumable_get(client, url, out, state, progress, data, retries, say, sleep)
    state_path(out).unlink(missing_ok=True)
    return _with_manifest(outcome)


# -- as a job, resumable -------------------------------------------------------------------------------


def _load_state(out: Path, order_id: str, params: dict[str, str], kind: str = "job") -> dict[str, Any] | None:
    path = state_path(out)
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    if state.get("order_id") != order_id or state.get("params") != params or state.get("kind", "job") != kind:
        return None  # the .part belongs to another order, other options or the other mode: start over
    return state


def _save_state(out: Path, state: dict[str, Any]) -> None:
    write_own_text(state_path(out), json.dumps(state))


def _job_status(client: httpx.Client, job_id: str) -> httpx.Response:
    return client.get(f"v1/jobs/{job_id}")


def job_archive(
    client: httpx.Client,
    order_id: str,
    params: dict[str, str],
    out: Path,
    progress: Progress,
    *,
    retries: int = 5,
    say: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    state = _load_state(out, order_id, params)
    job: dict[str, Any] | None = None
    if state is not None:
        response = _job_status(client, state["job_id"])
        if response.status_code == 200 and response.json().get("status") != "failed":
            job = response.json()
            kept = part_path(out).stat().st_size if part_path(out).is_file() else 0
            say(f"Resuming job {shown(state['job_id'])} ({kept} bytes already here)")
        else:
            say("The earlier job is gone or failed; starting a new one")
            state = None
    if state is None:
        part_path(out).unlink(missing_ok=True)
        response = client.post(f"v1/orders/{order_id}/jobs", params=params)
        if response.status_code != 202:
            raise refused(response)
        state = {"order_id": order_id, "params": params, "job_id": response.json()["job_id"], "etag": None}
        _save_state(out, state)
    job_id = state["job_id"]

    images, data = image_and_byte_tasks(progress, job.get("total") if job else None, None)
    polls = 0
    while True:
        response = _job_status(client, job_id)
        if response.status_code != 200:
            raise refused(response)
        job = response.json()
        progress.update(
            images, total=job["total"] or None, completed=job["downloaded"] + job["failed"],
            note=f"{job['failed']} failed" if job["failed"] else "",
        )
        if job["status"] == "failed":
            state_path(out).unlink(missing_ok=True)
            raise TransferError(f"The job failed: {job.get('error') or 'no image could be downloaded'}", 422)
        if job["status"] in FINISHED:
            break
        sleep(POLL_SECONDS[min(polls, len(POLL_SECONDS) - 1)])
        polls += 1

    outcome = _resumable_get(client, f"v1/jobs/{job_id}/download", out, state, progress, data, retries, say, sleep)
    state_path(out).unlink(missing_ok=True)
    outcome.total, outcome.downloaded, outcome.failed = job["total"], job["downloaded"], job["failed"]
    outcome.failures = list(job.get("failures") or [])
    return outcome


@contextlib.contextmanager
def _get_following(client: httpx.Client, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    """GET from the service; a redirect to where the file lives (a scaled-out service's presigned S3
    URL) is followed once, with the same Range headers but without the client's headers: the
    service's key never leaves for another host, and the signature in the URL is the credential."""
    with client.stream("GET", url, headers=headers) as response:
        location = response.headers.get("location") if response.is_redirect else None
        if location is None:
            yield response
            return
        target = response.url.join(location)
    with httpx.Client(timeout=client.timeout, trust_env=True, verify=client_context()) as plain, plain.stream("GET", target, headers=headers) as followed:
        yield followed


def _drop_damage(part: Path, say: Callable[[str], None]) -> None:
    """Cut a kept `.part` back to its last intact member before asking for the rest."""
    if not part.is_file() or part.stat().st_size == 0:
        return
    keep, damaged = intact_length(part)
    if damaged:
        say(f"The kept bytes are damaged after byte {keep}; resuming from there")
        with open_own(part, "ab") as file:
            file.truncate(keep)


def _content_range_total(value: str | None) -> int | None:
    if value and "/" in value:
        total = value.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    return None


def _resumable_get(
    client: httpx.Client,
    url: str,
    out: Path,
    state: dict[str, Any],
    progress: Progress,
    task: TaskID,
    retries: int,
    say: Callable[[str], None],
    sleep: Callable[[float], None],
) -> Outcome:
    part = part_path(out)
    resumed_from: list[int] = []
    failures = 0
    _drop_damage(part, say)
    checked = False
    while True:
        have = part.stat().st_size if part.is_file() else 0
        headers = {}
        if have:
            headers["Range"] = f"bytes={have}-"
            if state.get("etag"):
                headers["If-Range"] = state["etag"]  # a different file than ours: the server sends it whole
            resumed_from.append(have)
        expected: int | None = None
        try:
            with _get_following(client, url, headers) as response:
                if response.status_code == 416:  # our .part is longer than the file: start over
                    part.unlink(missing_ok=True)
                    continue
                if response.status_code == 206:
                    mode, expected = "ab", _content_range_total(response.headers.get("content-range"))
                elif response.status_code == 200:
                    mode, have = "wb", 0
                    length = response.headers.get("content-length")
                    expected = int(length) if length else None
                elif response.status_code == 410:  # the job's file expired: what we kept is useless now
                    part.unlink(missing_ok=True)
                    state_path(out).unlink(missing_ok=True)
                    raise TransferError(f"{error_detail(response)}; run the command again to prepare a new job")
                else:
                    raise refused(response)
                state["etag"] = response.headers.get("etag")
                _save_state(out, state)
                progress.update(task, total=expected, completed=have)
                with open_own(part, mode) as file:
                    for chunk in response.iter_bytes(CHUNK):
                        file.write(chunk)
                        have += len(chunk)
                        progress.update(task, completed=have)
            if expected is not None and have != expected:
                raise httpx.RemoteProtocolError(f"body ended at {have} of {expected} bytes")
            damaged = damaged_member(part) if resumed_from and not checked else None
            if damaged is None:
                break
            checked = True  # once: a whole download that fails its check again is the service's to explain
            say(f"The resumed file fails its check ({shown(damaged)}); downloading it whole again")
            part.unlink(missing_ok=True)
            state["etag"] = None
        except httpx.TransportError as exc:
            failures += 1
            if failures > retries:
                raise TransferError(
                    f"The download was cut {failures} times ({type(exc).__name__}); {have} bytes are kept in "
                    f"{part.name}: run the same command again to resume"
                ) from exc
            say(f"Connection lost at {have} bytes ({type(exc).__name__}); resuming")
            sleep(min(0.25 * 2.0 ** (failures - 1), 5.0))
    part.replace(out)
    return Outcome(out, have, resumed_from=resumed_from)
