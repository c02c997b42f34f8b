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


@contextlib.contextmanager
def captured_native_output():
    """Redirect fds 1 and 2 to a temp file for the duration; on an exception, write the capture to stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as cap:
        os.dup2(cap.fileno(), 1)
        os.dup2(cap.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed and os.environ.get("EDGEPORT_NATIVE_LOG"):
                cap.seek(0)
                sys.stderr.write(cap.read().decode(errors="replace")[-4000:])
