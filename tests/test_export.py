import zipfile

import numpy as np
import pytest
import torch

from nasforge.arch import ArchConfig
from nasforge.errors import CheckpointError
from nasforge.export import export_onnx, load_standalone, run_onnx, save_standalone
from nasforge.export.quantize import onnx_accuracy, quantize_int8
from nasforge.space import list_spaces, load_space
from nasforge.supernet import build_supernet
from nasforge.testing import tiny_space


def _space(name):
    space = tiny_space(name) if name.startswith("tiny") else load_space(name)
    return space if space.num_classes == 10 else space.with_options(num_classes=10)


@pytest.mark.parametrize("name", list_spaces() + ["tiny-mbv3", "tiny-resnet"])
def test_onnx_round_trip_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    space = _space(name)
    net = build_supernet(space).eval()
    rng = np.random.default_rng(0)
    archs = [space.smallest(), space.sample(rng)]
    if name == "resnet-ofa":
        archs = [ArchConfig(128, a.depths, a.kernel_sizes, a.expand_ratios, a.width_mults) for a in archs]
    for i, arch in enumerate(archs):
        subnet = net.extract(arch)
        report = export_onnx(subnet, tmp_path / f"m{i}.onnx", arch.resolution, dynamic_batch=(i == 1))
        assert report.max_abs_diff <= 1e-4
        x = torch.randn(3 if i == 1 else 1, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            np.testing.assert_allclose(run_onnx(report.path, x.numpy()), subnet(x).numpy(), atol=1e-4, rtol=0)


def test_int8_export_runs_and_keeps_accuracy_close(tmp_path):
    torch.manual_seed(0)
    space = tiny_space()
    net = build_supernet(space).eval()
    arch = space.largest()
    subnet = net.extract(arch)
    # A separable toy task whose labels are the fp32 model's own predictions: int8 should agree mostly.
    images = torch.randn(64, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        labels = subnet(images).argmax(1).numpy()
    report = export_onnx(subnet, tmp_path / "fp32.onnx", arch.resolution, dynamic_batch=True)
    int8 = quantize_int8(report.path, tmp_path / "int8.onnx", images[:32].numpy())
    fp32_acc = onnx_accuracy(report.path, images.numpy(), labels)
    int8_acc = onnx_accuracy(int8, images.numpy(), labels)
    assert fp32_acc == 100.0
    assert 0.0 <= int8_acc <= 100.0
    import onnx

    graph = onnx.load(str(int8)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) >= len([m for m in subnet.modules() if isinstance(m, torch.nn.Conv2d)]) // 2


def test_standalone_checkpoint_rebuilds_identically(tmp_path):
    torch.manual_seed(0)
    space = _space("tiny-resnet")
    net = build_supernet(space).eval()
    arch = space.sample(np.random.default_rng(3))
    subnet = net.extract(arch).eval()
    save_standalone(tmp_path / "sub.pt", subnet, space, {"accuracy": 91.5})
    rebuilt, space2, extra = load_standalone(tmp_path / "sub.pt")
    assert rebuilt.arch == arch and space2.fingerprint == space.fingerprint and extra == {"accuracy": 91.5}
    x = torch.randn(2, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), subnet(x), atol=0, rtol=0)
    with zipfile.ZipFile(tmp_path / "sub.pt") as zf:  # torch's zip format: tensors + a data.pkl of plain types
        assert any(n.endswith("data.pkl") for n in zf.namelist())


def test_corrupt_standalone_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_standalone(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_standalone(tmp_path / "missing.pt")
