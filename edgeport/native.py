"""Keep native libraries' log lines (TensorFlow/MLIR, absl, ONNX Runtime) off the user's terminal and out of
`--json` stdout. They are captured at the file-descriptor level and replayed only when the wrapped call fails."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


_ACTIVE: list[tuple[tuple[int, int], int]] = []  # (the terminal's saved fds 1/2, the capture's fd) per open capture


@contextlib.contextmanager
def passthrough():
    """Inside `captured_native_output`: let edgeport's own lines (progress) reach the terminal for the duration."""
    if not _ACTIVE:
        yield
        return
    (out, err), cap = _ACTIVE[-1]
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out, 1)
    os.dup2(err, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(cap, 1)
        os.dup2(cap, 2)


@contextlib.contextmanager
def captured_native_output():
    """Redirect fds 1 and 2 to a temp file for the duration; on an exception, write the capture to stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as cap:
        os.dup2(cap.fileno(), 1)
        os.dup2(cap.fileno(), 2)
        _ACTIVE.append((saved, cap.fileno()))
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            _ACTIVE.pop()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed and os.environ.get("EDGEPORT_NATIVE_LOG"):
                cap.seek(0)
                sys.stderr.write(cap.read().decode(errors="replace")[-4000:])
