"""The one rule for every command that writes a file: an output never overwrites one of its inputs.

`perception test X.mcap --out X.mcap` replaced the recording it was reading with an empty one and exited 0.
An output is refused when it names an input by the same path, through a symlink, or as a hard link to it
(same device and inode); a directory output when an input lies inside it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PathLike = str | os.PathLike[str]


class OutputIsInputError(ValueError):
    """An output path that is (or, for a directory output, holds) one of the command's inputs."""


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links: the same device and inode under two names
    except OSError:  # one of them does not exist (yet): it cannot be the other
        return False


def _inside(inner: Path, outer: Path) -> bool:
    return Path(os.path.realpath(inner)).is_relative_to(os.path.realpath(outer))


def check_output(
    out: PathLike | None, inputs: Iterable[PathLike | None], flag: str, *, directory: bool = False
) -> None:
    """OutputIsInputError (one line: the flag, the output and the input) if `out` would overwrite an input.
    `directory`: `out` is a folder the command writes into; any input inside it is refused too."""
    if out is None:
        return
    out_path = Path(out)
    for item in inputs:
        if item is None:
            continue
        src = Path(item)
        if _same(out_path, src) or (directory and _inside(src, out_path)):
            what = "is" if _same(out_path, src) else "holds"
            raise OutputIsInputError(
                f"{flag} {out} {what} the input {src}: an output never overwrites an input; write it elsewhere"
            )


def output_error(command: str, out: PathLike | None, inputs: Iterable[PathLike | None], flag: str, **kw) -> int | None:
    """For a command's run(): print the one-line error and return 2 when `out` is an input, else None."""
    import sys

    try:
        check_output(out, inputs, flag, **kw)
    except OutputIsInputError as exc:
        print(f"perception {command}: {exc}", file=sys.stderr)
        return 2
    return None
