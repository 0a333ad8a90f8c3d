"""`make bench`: the service, the simulator and the baselines as separate processes on loopback.

    python -m bench                      # all seven cases
    python -m bench --only throughput    # one case (repeatable)
    python -m bench --markdown out.md    # also write the results table as Markdown

Each case prints its figures beside references measured in the same run (see bench/cases.py), so
a noisy machine still gives fair ratios. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.cases import CASES, Bench, Row
from harness import processes

COLUMNS = ("case", "figure", "ours", "reference (same run)", "ratio", "target", "met")


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def verdict(row: Row) -> str:
    return {True: "yes", False: "NO", None: "-"}[row.met]


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = (row.case, row.figure, row.ours, row.reference, row.ratio, row.target, verdict(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    parser.add_argument("--markdown", type=Path, help="also write the results table to this file")
    args = parser.parse_args()
    chosen = args.only or list(CASES)
    header = f"Machine: {machine()}. Command: `make bench` ({time.strftime('%Y-%m-%d')})."
    print(header, flush=True)
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, processes.simulator() as sim:
        bench = Bench(sim, Path(tmp))
        for name in chosen:
            case_started = time.monotonic()
            case_rows = CASES[name](bench)
            for row in case_rows:
                print(f"{row.case} | {row.figure}: {row.ours} | {row.reference} | {row.ratio} "
                      f"| target {row.target}: {verdict(row)}", flush=True)
            print(f"   ({time.monotonic() - case_started:.0f} s)", flush=True)
            rows += case_rows
    print(f"all cases: {time.monotonic() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text(markdown(rows, header))
    missed = [row for row in rows if row.met is False]
    for row in missed:
        print(f"MISSED: {row.case}: {row.figure} {row.ours} (target {row.target})", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
