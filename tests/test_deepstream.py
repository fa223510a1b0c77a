"""The DeepStream nvinfer config: every path and number checked against the manifest."""

import configparser
import json

import numpy as np
import pytest

from edgetl.bundle.deepstream import write_deepstream

pytestmark = pytest.mark.slow


def test_config_matches_manifest(exported_run):
    bundle = exported_run.export_dir
    path = write_deepstream(bundle)
    cp = configparser.ConfigParser()
    cp.read(path)
    p = cp["property"]
    m = json.loads((bundle / "manifest.json").read_text())
    inp = m["input"]
    assert (path.parent / p["onnx-file"]).resolve() == (bundle / m["artifacts"]["fp32"]["file"]).resolve()
    assert (path.parent / p["labelfile-path"]).is_file()
    labels = (path.parent / p["labelfile-path"]).read_text().splitlines()
    assert [ln.split(";") for ln in labels] == [t["labels"] for t in m["tasks"]]
    assert p["infer-dims"] == f"3;{inp['image_size'][0]};{inp['image_size'][1]}"
    assert p["output-blob-names"].split(";") == [t["output"] for t in m["tasks"]]
    assert p["network-mode"] == "0" and p["network-type"] == "1" and p["batch-size"] == "1"
    # nvinfer's y = k * (x - offset) reproduces edgetl's (x*scale - mean)/std up to the single-std approximation
    x = np.array([0.0, 128.0, 255.0])
    k = float(p["net-scale-factor"])
    offsets = [float(v) for v in p["offsets"].split(";")]
    for c in range(3):
        ours = (x * inp["scale"] - inp["mean"][c]) / inp["std"][c]
        theirs = k * (x - offsets[c])
        assert np.allclose(theirs, ours, rtol=0.05, atol=0.05)
