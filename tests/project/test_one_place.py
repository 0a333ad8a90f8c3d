"""What the code keeps in one place stays there: the counters behind GET /api/stats are moved only
by app/core/stats.py (each by a method named for what happened), and a manifest entry is made only
by app/core/report.py. Read from the source with `ast`, so a new door that bumps a counter itself,
or builds its own manifest entry, fails here before its numbers drift from the others'."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

from app.core.stats import Stats

ROOT = Path(__file__).resolve().parents[2]
COUNTERS = {f.name for f in fields(Stats) if f.type in ("int", int)}


def modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text(), str(p))) for p in sorted((ROOT / "app").rglob("*.py"))]


def counters_moved(tree: ast.Module) -> list[int]:
    """Lines that assign to (or add to) an attribute named like a counter of Stats."""
    lines = []
    for node in ast.walk(tree):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        )
        lines += [t.lineno for t in targets if isinstance(t, ast.Attribute) and t.attr in COUNTERS]
    return lines


def manifest_entries(tree: ast.Module) -> list[int]:
    """Lines with a dict literal holding the keys of a manifest file entry."""
    keys = {"image_id", "name", "set", "bytes"}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        and keys <= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    ]


def test_the_counters_are_known() -> None:
    assert {"orders_processed", "images_downloaded", "images_failed", "zips_served", "bytes_sent"} <= COUNTERS


def test_only_the_stats_module_moves_a_counter() -> None:
    moved = {path: lines for path, tree in modules() if (lines := counters_moved(tree))}
    assert set(moved) == {"app/core/stats.py"}, moved


def test_only_the_report_makes_a_manifest_entry() -> None:
    made = {path: lines for path, tree in modules() if (lines := manifest_entries(tree))}
    assert set(made) == {"app/core/report.py"}, made


def test_the_checks_see_what_they_look_for() -> None:
    """Each check finds the shape it forbids (else the two tests above would pass on anything)."""
    bump = ast.parse("services.stats.bytes_sent += len(chunk)\nstats.zips_served = 0\n")
    entry = ast.parse('members.append({"image_id": i, "name": n, "set": s, "bytes": b})\n')
    assert counters_moved(bump) == [1, 2] and manifest_entries(entry) == [1]
    assert counters_moved(entry) == [] and manifest_entries(bump) == []
