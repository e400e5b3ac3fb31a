"""The audit startup benchmark, small: counts, not times."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_audit_startup import generate, measure
from controller.audit.rotation import Rotation


def test_a_start_reads_the_active_file_alone_and_rebuilds_the_same_memory(
    tmp_path: Path,
) -> None:
    """2 MiB of realistic history for 40 targets, rotating at 256 KiB: a start reads the
    snapshot and the tail only, and rebuilds the memory the whole file gives."""
    rotation = Rotation(max_bytes=256 * 1024)
    made = generate(tmp_path, 2, 40, rotation)
    assert made["rotations"] >= 7
    whole = measure(tmp_path / "whole.jsonl")
    active = measure(tmp_path / "rotated.jsonl")
    assert whole["lines_read"] == made["lines"]
    assert active["lines_read"] * 6 < made["lines"]
    assert (active["targets"], active["open_intents"]) == (whole["targets"], whole["open_intents"])
    assert active["digest"] == whole["digest"]
