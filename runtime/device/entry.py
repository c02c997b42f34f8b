"""The runner's entry point: its arguments, the deadline that kills its process group, the RSS probes it starts
(this same file, `--probe I`), and the one result line it prints.

Part of the device runner (see protocol.py): the last part of the assembled file, which runs `main` as a script.
"""
from __future__ import annotations

import json
import os
import signal
import sys

from .job import probe, run_job
from .machine import discover
from .protocol import RESULT_MARKER, USAGE, BrokenArtifact, RunnerError, result_line


def _subprocess_probe(job_path: str):
    """index -> the peak RSS (MB) of configuration `index` measured in a fresh process of this runner."""
    import subprocess

    def run(index: int) -> float | None:
        # __file__: the assembled runner, the one form in which this module runs as a program
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), job_path, "--probe", str(index)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_MARKER):
                return json.loads(line[len(RESULT_MARKER):])["peak_rss_mb"]
        raise RunnerError(f"RSS probe {index} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")

    return run


def _kill_group(signum, frame):  # pragma: no cover - exercised by the hang tests through a subprocess
    sys.stderr.write("edgeport runner: deadline reached, killing its process group\n")
    sys.stderr.flush()
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Run the command `argv` asks for (see USAGE); print its result line. Exit 0 ok, 2 usage, 3 a runner error
    (one line the host shows), 4 anything else (traceback on stderr)."""
    if argv[:1] == ["--discover"]:
        print(result_line(discover()), flush=True)
        return 0
    if not argv:
        sys.stderr.write(USAGE)
        return 2
    job_path = os.path.abspath(argv[0])
    root = os.path.dirname(job_path)
    pid_file = os.path.join(root, "runner.pid")
    try:
        with open(job_path) as fh:
            job = json.load(fh)
        if "--probe" in argv:
            out = probe(job, root, int(argv[argv.index("--probe") + 1]))
        else:
            try:
                os.setpgrp()  # the runner and its probes form one group the host can kill
            except OSError:
                pass
            with open(pid_file, "w") as fh:  # the host's cleanup kills this group (on a timeout)
                fh.write(str(os.getpgrp()))
            if "--deadline" in argv:
                signal.signal(signal.SIGALRM, _kill_group)
                signal.alarm(max(1, int(float(argv[argv.index("--deadline") + 1]))))
            out = run_job(job, root, rss_probe=_subprocess_probe(job_path) if job.get("rss", True) else None)
    except BrokenArtifact as exc:
        print(result_line({"error": str(exc), "broken_artifact": exc.file}), flush=True)
        return 3
    except RunnerError as exc:
        print(result_line({"error": str(exc)}), flush=True)
        return 3
    except Exception as exc:  # noqa: BLE001 - a broken artifact or runtime: one line back to the host
        import traceback

        traceback.print_exc()
        print(result_line({"error": f"runner failed: {type(exc).__name__}: {exc}"}), flush=True)
        return 4
    finally:
        if "--probe" not in argv:  # finished: no pid for the cleanup to kill (it could be reused by then)
            try:
                os.unlink(pid_file)
            except OSError:
                pass
    print(result_line(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
