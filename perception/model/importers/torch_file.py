"""Read a `torch.save` file as data: tensors and plain values only, never code.

`torch.load(weights_only=True)` already refuses most globals; we check first, with nothing unpickled,
that the pickle names no global outside a short list (tensor rebuilders, storage types, OrderedDict),
so a file that tries to reach anything else is refused with its name before torch sees it.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

# Every global a torch.save of a dict of tensors and plain values (str, int, float, None, lists, dicts) names.
SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("collections", "OrderedDict"),
} | {
    ("torch", f"{kind}Storage")
    for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
}
STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING", "STRING"}
MAX_PICKLE_BYTES = 256 * 2**20  # the object graph (not the tensor data, which lives in separate records)


class UnsafeFileError(ValueError):
    """A file that is not a torch zip checkpoint of plain data, or names code to run."""


def pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """(module, name) of every global the pickle would import, in order; UnsafeFileError when one cannot be
    told from the opcodes alone (a STACK_GLOBAL fed by anything but literal strings)."""
    found: list[tuple[str, str]] = []
    recent: list[Any] = []  # values of the last pushes that matter to STACK_GLOBAL: strings, or None
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            found.append((module, attr))
        elif name == "STACK_GLOBAL":
            if len(recent) < 2 or not all(isinstance(v, str) for v in recent[-2:]):
                raise UnsafeFileError("a global whose name is computed at load time")
            found.append((recent[-2], recent[-1]))
        elif name in STRING_OPS:
            recent.append(arg if isinstance(arg, str) else bytes(arg).decode("latin-1"))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = recent[-1] if recent else None
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(arg)))
        else:
            recent.append(None)
        del recent[:-2]
    return found


def check_globals(path: Path) -> None:
    """UnsafeFileError unless `path` is a torch zip checkpoint whose pickle names only SAFE_GLOBALS."""
    if not zipfile.is_zipfile(path):
        raise UnsafeFileError(f"{path}: not a torch.save zip file (legacy or foreign pickles are not read)")
    with zipfile.ZipFile(path) as zf:
        pkls = [i for i in zf.infolist() if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if len(pkls) != 1:
            raise UnsafeFileError(f"{path}: expected one data.pkl in the zip, found {len(pkls)}")
        if pkls[0].file_size > MAX_PICKLE_BYTES:
            raise UnsafeFileError(f"{path}: object graph of {pkls[0].file_size} bytes (> {MAX_PICKLE_BYTES})")
        data = zf.read(pkls[0])
    try:
        names = pickle_globals(data)
    except UnsafeFileError as exc:
        raise UnsafeFileError(f"{path}: {exc}") from None
    except Exception as exc:  # a truncated or corrupt pickle
        raise UnsafeFileError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from None
    bad = sorted({f"{m}.{n}" for m, n in names if (m, n) not in SAFE_GLOBALS})
    if bad:
        raise UnsafeFileError(f"{path}: refers to code, not only tensors: {', '.join(bad[:5])}")


def load_data(path: str | Path) -> Any:
    """The object a torch.save file holds, read as data (memory-mapped tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    check_globals(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch's own refusal or a damaged archive: one line, not a traceback
        raise UnsafeFileError(f"{path}: torch.load(weights_only=True) refused it: {str(exc).splitlines()[0]}") from None
