"""A DeepStream `nvinfer` configuration beside the bundle, so a Jetson GStreamer pipeline can load the model
without hand-editing.

nvinfer normalises as y = net-scale-factor * (x - offsets[c]) with ONE scale for all channels. edgetl's
pre-processing is y = (x * scale - mean[c]) / std[c]; the two agree exactly when std is the same for every
channel. Otherwise the config uses the mean std and says so (with the worst-case relative error) in a comment.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.runtime.artifacts import deepstream_choice
from edgetl.runtime.atomic import atomic_write_text
from edgetl.runtime.tasks import get_kind

NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}


OTHER_NETWORK = 100  # nvinfer's "other": raw output tensors attached as metadata, no parser
DETECTOR, CLASSIFIER = 0, 1


def network_type(bundle: Path, tasks: list[dict]) -> int:
    """nvinfer's network-type, from the task kinds (each kind declares its own; a kind without one, e.g.
    regression, rides along as an extra output layer). Kinds that want different parsers cannot share one config."""
    types = {get_kind(t["kind"]).deepstream_network(t) for t in tasks} - {None}
    if DETECTOR in types and types <= {DETECTOR, CLASSIFIER, OTHER_NETWORK}:
        return DETECTOR  # the detector's parser makes the objects; the other outputs ride along as tensor meta
    if len(types) > 1:
        kinds = ", ".join(f"{t['name']} ({t['kind']})" for t in tasks)
        raise EdgetlError(
            f"{bundle}: tasks {kinds} need different DeepStream network types; one nvinfer config holds one"
        )
    return types.pop() if types else OTHER_NETWORK


def deepstream_config(
    bundle: Path, artifact: str | None = None, batch_size: int = 1, gie_id: int = 1, secondary: bool = False
) -> dict[str, str]:
    """The [property] keys for nvinfer (strings, as they appear in the file)."""
    m = json.loads((Path(bundle) / "manifest.json").read_text())
    inp = m["input"]
    if inp["kind"] != "image":
        raise EdgetlError(f"{bundle}: DeepStream nvinfer configs are for image models (this bundle is {inp['kind']})")
    arts = m["artifacts"]
    name = artifact or deepstream_choice(arts) or "fp32"
    if name not in arts:
        raise EdgetlError(f"--artifact {name!r}: not in the bundle ({', '.join(arts)})")
    entry = arts[name]
    onnx_entry = (
        arts[name] if entry["format"] == "onnx" else arts.get(entry.get("source_artifact", "fp32"), arts["fp32"])
    )
    std = inp["std"]
    mean_std = sum(std) / len(std)
    h, w = inp["image_size"]
    props = {
        "gpu-id": "0",
        "net-scale-factor": repr(inp["scale"] / mean_std),
        "offsets": ";".join(repr(mu / inp["scale"]) for mu in inp["mean"]),
        "model-color-format": "0",  # RGB
        "onnx-file": f"../{onnx_entry['file']}",
        "labelfile-path": "labels.txt",
        "infer-dims": f"{inp['channels']};{h};{w}",
        "network-input-order": "0",  # NCHW
        "batch-size": str(batch_size),
        "network-mode": str(NETWORK_MODE[entry["precision"]]),
        "network-type": str(network_type(bundle, m["tasks"])),
        "process-mode": "2" if secondary else "1",
        "gie-unique-id": str(gie_id),
        "output-blob-names": ";".join(
            n for t in m["tasks"] for n in get_kind(t["kind"]).output_names(t["output"], t.get("output_format"))
        ),
        "classifier-threshold": "0.0",
        # letterbox: nvinfer scales with the aspect kept and pads both sides, as edgetl.runtime.crop.letterbox
        "maintain-aspect-ratio": "1" if inp.get("resize") == "letterbox" else "0",
        "symmetric-padding": "1" if inp.get("resize") == "letterbox" else "0",
    }
    if props["network-type"] != "1":
        del props["classifier-threshold"]
    for t in m["tasks"]:  # what a kind's own nvinfer parser needs (segmentation: classes, threshold)
        props.update(get_kind(t["kind"]).deepstream_properties(t))
    if props["network-type"] == str(OTHER_NETWORK) or (
        props["network-type"] == str(DETECTOR)
        and any(get_kind(t["kind"]).deepstream_network(t) != DETECTOR for t in m["tasks"])  # fmt: skip
    ):
        props["output-tensor-meta"] = "1"  # outputs no parser reads (image-level heads): the application reads them
    if entry["format"] == "tensorrt":
        props["model-engine-file"] = f"../{entry['file']}"
    return props


def write_deepstream(bundle: Path, artifact: str | None = None, batch_size: int = 1) -> Path:
    bundle = Path(bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    props = deepstream_config(bundle, artifact, batch_size)
    std = m["input"]["std"]
    mean_std = sum(std) / len(std)
    worst = max(abs(s / mean_std - 1) for s in std)
    lines = ["# DeepStream nvinfer config written by edgetl from manifest.json", f"# bundle: {bundle}"]
    if worst > 1e-6:
        lines.append(
            f"# note: per-channel std {std} approximated by one net-scale-factor (max relative error {worst:.1%})"
        )
    lines += ["[property]"] + [f"{k}={v}" for k, v in props.items()]
    ds = bundle / "deepstream"
    atomic_write_text(ds / "config_infer.txt", "\n".join(lines) + "\n")
    # nvinfer classifier label file: one line per output layer, labels separated by ';'
    atomic_write_text(ds / "labels.txt", "\n".join(";".join(t["labels"]) for t in m["tasks"]) + "\n")
    return ds / "config_infer.txt"
