"""Structured logs (structlog, JSON by default) with request and order context, and Sentry.

Standard-library loggers go through structlog's formatter, so `log.info("msg", extra={...})` from
any module, and uvicorn's own lines, come out as one JSON object per line with the context
variables (request id, order id, job id) bound for the current request.
"""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace

from app.config import Settings


def _drop_color_message(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """uvicorn adds an ANSI-coloured copy of each message; a JSON line needs only one."""
    event.pop("color_message", None)
    return event


CONTEXT_KEYS = ("request_id", "order_id", "job_id")


def _context_keys(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """Every JSON line carries request_id, order_id and job_id (null when not known), so log queries
    can filter on them without caring which line kinds bind which. Not at a terminal: a person reads
    those lines, and `job_id=None` on each of them is noise."""
    for key in CONTEXT_KEYS:
        event.setdefault(key, None)
    return event


def _trace_ids(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """With tracing on, a line logged inside a span names it, so logs and traces join up."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def configure_logging(settings: Settings) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,  # after ExtraAdder: uvicorn passes it as an `extra`
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _trace_ids,
    ]
    as_json = settings.log_json if settings.log_json is not None else not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *([_context_keys] if as_json else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # access lines too: JSON, with the request id
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def configure_sentry(settings: Settings) -> bool:
    """Initialise Sentry when SENTRY_DSN is set; a no-op otherwise."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        traces_sample_rate=0.1,
        send_default_pii=False,
        # Frame locals hold ASGI scopes and settings, i.e. callers' X-API-Key and our upstream key.
        include_local_variables=False,
        environment="demo" if settings.demo_mode else "production",
    )
    return True
