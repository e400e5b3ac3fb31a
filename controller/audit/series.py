"""Verifying a rotated audit log as a whole: every file, and the link between each two."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.audit.log import check_file
from controller.audit.rotation import series


@dataclass(frozen=True)
class SeriesCheck:
    """What a walk along every file found: the first problem, or the totals."""

    files: int
    lines: int
    first_seq: int  # where the oldest file kept starts (1 unless older ones were removed)
    bad_file: Path | None = None
    bad_line: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_series(path: Path) -> SeriesCheck:
    """Verify ``<log>.1 … <log>.n`` and then ``<log>``, in order: each file's chain, and
    that each file's first line follows the last line of the file before it."""
    files = series(path)
    lines, first_seq = 0, 1
    previous: Path | None = None
    last_hash, next_seq = "", 0
    for number, file in enumerate(files):
        check = check_file(file)
        if not check.ok:
            return SeriesCheck(number, lines, first_seq, file, check.first_bad, check.problem)
        if check.torn is not None and file != path:
            problem = "a torn last line in a rotated file"
            return SeriesCheck(number, lines, first_seq, file, check.lines + 1, problem)
        if previous is None:
            first_seq = check.first_seq
        elif check.lines and (check.first_seq, check.first_prev) != (next_seq, last_hash):
            problem = (
                f"does not follow {previous.name}: its first line is seq {check.first_seq}, "
                f"expected {next_seq} with prev the last hash of {previous.name}"
            )
            return SeriesCheck(number, lines, first_seq, file, 1, problem)
        if check.lines:
            previous, last_hash, next_seq = file, check.last_hash, check.last_seq + 1
        lines += check.lines
    return SeriesCheck(len(files), lines, first_seq)
