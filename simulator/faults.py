"""Injectable failures: what can go wrong upstream, on demand and countable.

A fault matches globally, or only for one image or one order (an image fault with `order_id`
matches every image of that order). `times` is how often it fires (None = always); a firing is
consumed when the simulator acts on it.

`error_status` is the exception: it is a view, not an event. While it is registered, the images
it has claimed show status "error" with `status_reason` in the order and image JSON (and
/enhanced answers as for an unprocessed image). `times` then bounds how many distinct images it
claims. Clearing faults lets those images show their real status again.

`order_payload` answers the order fetch with `payload` as its JSON body (null or missing fields, a
list, anything). `probability` (0-1, default 1) makes a fault fire only on that share of the
requests it matches: a soak's "5 % of downloads fail" (not `error_status`, which is a view).

`altered_bytes` serves an asset with the byte at `after_bytes` inverted, same size and headers: an
image re-rendered upstream without the order changing (what a resumed download must notice).
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

FaultKind = Literal[
    "latency",
    "status",
    "rate_limit",
    "not_ready",
    "error_status",
    "stall",
    "truncate",
    "altered_bytes",
    "expired_asset",
    "asset_404",
    "redirect_loop",
    "order_status",
    "order_not_json",
    "order_latency",
    "order_payload",
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))

DEFAULT_ERROR_REASON = "Simulated enhancement failure"


@dataclass
class Fault:
    """One injected failure. Field meaning depends on `kind` (see the module docstring)."""

    kind: FaultKind
    image_id: str | None = None
    order_id: str | None = None
    times: int | None = None
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    after_bytes: int = 0
    status_reason: str | None = None
    payload: Any = None
    probability: float = 1.0
    fired: int = field(default=0, compare=False)
    claimed: set[str] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.seconds < 0 or self.after_bytes < 0:
            raise ValueError("seconds and after_bytes must be >= 0")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, image_id: str | None, order_id: str | None) -> bool:
        if self.image_id is not None and self.image_id != image_id:
            return False
        return self.order_id is None or self.order_id == order_id

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["claimed"] = sorted(self.claimed)
        return data


class FaultBook:
    """The registered faults; safe to use from the test thread and the server thread at once."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, kind: str, *, image_id: str | None = None, order_id: str | None = None) -> Fault | None:
        """The first live fault of `kind` matching the target, with one firing consumed."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and not fault.exhausted and fault.matches(image_id, order_id):
                    if fault.probability < 1.0 and random.random() >= fault.probability:
                        continue  # this time it does not fire (a soak's "5 % of requests")
                    fault.fired += 1
                    return fault
        return None

    def error_for(self, image_id: str, order_id: str | None) -> tuple[str | None, bool]:
        """(status_reason forced on this image by an `error_status` fault or None, newly claimed)."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != "error_status" or not fault.matches(image_id, order_id):
                    continue
                newly = image_id not in fault.claimed
                if newly:
                    if fault.exhausted:
                        continue
                    fault.claimed.add(image_id)
                    fault.fired += 1
                return fault.status_reason or DEFAULT_ERROR_REASON, newly
        return None, False
