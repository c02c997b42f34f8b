"""The peers' virtual environments: one per peer, each with its own pins, under the cache dir.

Their pins conflict with edgeport's (onnx2tf 1.29.x wants numpy 1.26, TensorFlow 2.19, onnx 1.19; litert-torch brings
jax, transformers, torchao), so each peer runs in its own `python -m venv`, driven through a subprocess.
torch is installed FIRST, pinned to the version of the running interpreter (2.13.0 here: the CPU wheel pip finds via
its find-links; any other version would pull a multi-GB CUDA build), so the peers' `torch>=...` ranges are already
satisfied and pip never replaces it.
"""
from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Peer(str, enum.Enum):
    ONNX2TF = "onnx2tf"
    LITERT_TORCH = "litert-torch"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class EnvSpec:
    """`requirements` are installed in one pip call after torch; `editable_repo` installs edgeport with --no-deps
    (the worker needs the model zoo to rebuild the nn.Module, nothing else); `probe` lists distributions whose
    versions are recorded."""

    peer: Peer
    requirements: tuple[str, ...]
    editable_repo: bool
    probe: tuple[str, ...]


ENVS: dict[Peer, EnvSpec] = {
    Peer.ONNX2TF: EnvSpec(
        peer=Peer.ONNX2TF,
        # onnx2tf pins every dependency exactly (numpy 1.26.4, tensorflow 2.19.0, onnx 1.19.1, onnxsim 0.4.36, ...).
        requirements=("onnx2tf==1.29.24",),
        editable_repo=False,
        probe=("onnx2tf", "tensorflow", "tf-keras", "numpy", "onnx", "onnxruntime", "onnxsim", "ai-edge-litert",
               "torch"),
    ),
    Peer.LITERT_TORCH: EnvSpec(
        peer=Peer.LITERT_TORCH,
        requirements=("litert-torch==0.10.0", "ai-edge-quantizer==0.10.0"),
        editable_repo=True,
        probe=("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "litert-converter", "torchao", "jax",
               "transformers", "numpy", "torch"),
    ),
}


def cache_dir() -> Path:
    """`$EDGEPORT_PEERS_CACHE`, else `~/.cache/edgeport-peers`."""
    return Path(os.environ.get("EDGEPORT_PEERS_CACHE", Path.home() / ".cache" / "edgeport-peers"))


def venv_dir(peer: Peer) -> Path:
    return cache_dir() / f"venv-{peer.value}"


def venv_python(peer: Peer) -> Path:
    return venv_dir(peer) / "bin" / "python"


def _torch_pin() -> str:
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def _stamp(peer: Peer) -> Path:
    return venv_dir(peer) / "edgeport-peers-ready.json"


def _wanted(spec: EnvSpec) -> dict:
    return {"torch": _torch_pin(), "requirements": list(spec.requirements), "editable_repo": spec.editable_repo}


def ensure_env(peer: Peer, *, log: Path) -> Path:
    """Create the peer's venv if missing or built with other pins; returns its python. pip output goes to `log`.

    Raises `RuntimeError` with the tail of pip's output when an install fails (the caller records it in the table).
    """
    spec = ENVS[peer]
    stamp = _stamp(peer)
    wanted = _wanted(spec)
    if stamp.exists() and json.loads(stamp.read_text()).get("wanted") == wanted:
        return venv_python(peer)
    venv_dir(peer).parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", str(venv_dir(peer))],
             [str(venv_python(peer)), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(venv_python(peer)), "-m", "pip", "install", wanted["torch"]],
             [str(venv_python(peer)), "-m", "pip", "install", *spec.requirements]]
    if spec.editable_repo:
        steps.append([str(venv_python(peer)), "-m", "pip", "install", "--no-deps", "-e", str(REPO)])
    t0 = time.time()
    with log.open("a") as fh:
        for cmd in steps:
            fh.write(f"\n$ {' '.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                fh.flush()
                tail = log.read_text().splitlines()[-25:]
                raise RuntimeError(f"`{' '.join(cmd[-3:])}` failed (exit {proc.returncode}):\n" + "\n".join(tail))
    stamp.write_text(json.dumps({"wanted": wanted, "seconds": round(time.time() - t0, 1)}, indent=1))
    return venv_python(peer)


def env_versions(peer: Peer) -> dict[str, str]:
    """Installed versions of the peer's probed distributions (and Python), read inside its venv."""
    code = ("import importlib.metadata as m, json, sys, platform\n"
            f"names = {list(ENVS[peer].probe)!r}\n"
            "out = {'python': platform.python_version()}\n"
            "for n in names:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([str(venv_python(peer)), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def venv_env(peer: Peer) -> dict[str, str]:
    """Environment for running a worker in the venv: its bin/ first on PATH (onnx2tf calls the `onnxsim` CLI)."""
    env = dict(os.environ)
    env["PATH"] = f"{venv_dir(peer) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv_dir(peer))
    env.pop("PYTHONPATH", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


if __name__ == "__main__":  # python benchmarks/peers/envs.py [peer ...]: build the venvs only
    for name in sys.argv[1:] or [p.value for p in Peer]:
        p = Peer(name)
        print(p, ensure_env(p, log=cache_dir() / f"install-{p.value}.log"), flush=True)
        print(env_versions(p), flush=True)
