"""Checkpoint reading: nested/prefixed state dicts, TorchScript, pickled modules (trust), strict key errors."""
import pytest
import torch
import torch.nn as nn

from edgeport.errors import CheckpointError, ModelBuildError, UnknownNameError
from edgeport.export.checkpoint import read_checkpoint, resolve_source, unwrap_state_dict
from edgeport.options import parse_builder_args
from edgeport.models import build_model

NAME = "shufflenet_v2_cifar_x0_5"


def _trained_like():
    torch.manual_seed(3)
    m = build_model(NAME)
    for p in m.parameters():
        p.data.normal_()
    return m


def _same(a: nn.Module, b: nn.Module) -> bool:
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        return torch.allclose(a(x), b(x))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "nested_prefix"])
def test_state_dict_wrappers(tmp_path, wrap):
    ref = _trained_like()
    sd = ref.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "nested_prefix": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    }[wrap]
    path = tmp_path / "ck.pth"
    torch.save(obj, path)
    src = resolve_source(NAME, checkpoint=path)
    assert _same(src.module, ref)
    assert len(src.checkpoint_sha256) == 64


def test_torchscript_checkpoint_needs_trust(tmp_path):
    """A TorchScript archive carries code (torch.jit.load compiles and runs it): like a pickled module it is refused
    with one line unless trusted, as a --checkpoint and as SOURCE."""
    ref = _trained_like()
    path = tmp_path / "ts.pt"
    torch.jit.trace(ref, torch.randn(1, 3, 32, 32)).save(str(path))
    for kwargs in ({"source": NAME, "checkpoint": path}, {"source": str(path), "input_shape": (3, 32, 32)}):
        with pytest.raises(CheckpointError) as info:
            resolve_source(**kwargs)
        assert "is a TorchScript archive" in str(info.value) and "pass --trust-checkpoint" in str(info.value)
        assert "\n" not in str(info.value)
    src = resolve_source(NAME, checkpoint=path, trust=True)
    assert _same(src.module, ref)
    src2 = resolve_source(str(path), input_shape=(3, 32, 32), trust=True)
    assert src2.kind.value == "torchscript"


def test_pickled_module_needs_trust(tmp_path):
    ref = _trained_like()
    path = tmp_path / "full.pt"
    torch.save(ref, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        resolve_source(NAME, checkpoint=path)
    src = resolve_source(NAME, checkpoint=path, trust=True)
    assert _same(src.module, ref)


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    sd = build_model(NAME).state_dict()
    sd.pop("fc.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["fc.weight"] = torch.zeros(5, 1024)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as ei:
        resolve_source(NAME, checkpoint=tmp_path / "bad.pth")
    msg = str(ei.value)
    assert "missing 1: fc.bias" in msg and "unexpected 1: extra.weight" in msg
    assert "fc.weight checkpoint (5, 1024) vs model (10, 1024)" in msg


def test_other_model_checkpoint_rejected(tmp_path):
    torch.save(build_model("augshufflenet_x0_5").state_dict(), tmp_path / "aug.pth")
    with pytest.raises(CheckpointError, match="does not fit"):
        resolve_source(NAME, checkpoint=tmp_path / "aug.pth")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage", b"hello this is text\n"])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")


def test_unknown_model_lists_valid():
    with pytest.raises(UnknownNameError) as ei:
        resolve_source("shufflenet_v9")
    assert "shufflenet_v2_x1_0" in str(ei.value)


def test_builder_args():
    assert parse_builder_args(["num_classes=7", "split_ratio=0.25", "channel_shuffle=false", "x=abc"]) == {
        "num_classes": 7, "split_ratio": 0.25, "channel_shuffle": False, "x": "abc"}
    src = resolve_source("augshufflenet_x1_0", builder_args={"split_ratio": 0.125, "num_classes": 100})
    assert src.spec.num_classes == 100
    with pytest.raises(ModelBuildError, match="does not take"):
        resolve_source("mobilenet_v2", builder_args={"split_ratio": 0.25})
    with pytest.raises(ModelBuildError, match="split_ratio"):
        resolve_source("augshufflenet_x0_5", builder_args={"split_ratio": 0.3})


def test_unwrap_no_tensors():
    with pytest.raises(CheckpointError, match="no tensors"):
        unwrap_state_dict({"epoch": 1, "lr": 0.1})
