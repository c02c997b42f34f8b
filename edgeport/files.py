"""Files edgeport writes: atomic writes (temp file in the same directory + os.replace, so an interrupted run never
leaves a truncated file that looks valid), sha256 digests, and the output-directory checks every command makes."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from edgeport.errors import OutputDirError


def current_umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def out_dir_lock(out: str | os.PathLike, *, what: str = "edgeport"):
    """One writer per output directory: an advisory lock on the directory itself (flock on its fd; no lock file is
    left behind, and the kernel drops the lock when the process dies). A second writer is refused with one line."""
    out = Path(out)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirError(f"another edgeport command is writing into {out}",
                                 hint=f"wait for it to finish, or give {what} another --out") from None
        yield out
    finally:
        os.close(fd)  # closing the fd releases the lock


def check_out_dir(out: str | os.PathLike) -> Path:
    """Raise OutputDirError if `out` is a file, lies under a file, or cannot be created or written; creates nothing."""
    if not str(out).strip():
        raise OutputDirError("the output directory is empty", hint="give --out a folder name")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output directory {out} exists and is a file", hint="choose another --out")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != out and not probe.is_dir():
        raise OutputDirError(f"cannot create output directory {out}: {probe} is a file", hint="choose another --out")
    if not _writable(probe):
        what = "output directory" if probe == out else f"cannot create output directory {out}: parent"
        raise OutputDirError(f"{what} {probe} is not writable", hint="choose another --out or fix permissions")
    return out


def _writable(d: Path) -> bool:
    """access(2) also refuses read-only mounts and immutable (chattr +i) folders, for root too."""
    return os.access(d, os.W_OK | os.X_OK)


# Leftovers of an interrupted run, removed by the next one: only names edgeport itself gives its temp files
# (atomic_write's `.<output>.<8 random>.tmp`, export's `.stage-<8 random>` folder, ORT's `.<model>.prepared.onnx`)
# for outputs edgeport writes. A user's own `notes.tmp` or `.cache.tmp` is never touched.
_OWNED_OUTPUT = r"(model[\w.-]*\.(onnx|tflite)|model[\w.-]*\.tensormap\.json|report(\.json|\.md|\.html|_[\w-]+\.png)" \
                r"|layers_sqnr\.png|compare\.(json|md|png)|guidelines\.(md|json))"
LEFTOVER_PATTERNS = (
    re.compile(rf"^\.{_OWNED_OUTPUT}\.[A-Za-z0-9_]{{8}}\.tmp$"),
    re.compile(r"^\.stage-[A-Za-z0-9_]{8}$"),
    re.compile(r"^\.model[\w-]*\.prepared\.onnx$"),
)


def is_leftover(name: str) -> bool:
    """True for the name of a temp file or staging folder an interrupted edgeport run left behind."""
    return any(p.match(name) for p in LEFTOVER_PATTERNS)


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create `out` if needed; raise OutputDirError if it is a file or not writable. Removes leftovers."""
    out = check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"cannot create output directory {out}: {exc.strerror}") from None
    if not _writable(out):
        raise OutputDirError(f"output directory {out} is not writable", hint="choose another --out or fix permissions")
    for tmp in out.iterdir():
        if not is_leftover(tmp.name):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return out
