"""What a task kind is to a device and to numpy: the torch-free half of a kind's registry entry.

A task kind owns every decision that depends on it: how labels are read from data rows and encoded, how many
outputs its head has, its metrics (the headline one and its direction), how the accuracy gate measures the damage
quantization did to its outputs, how the runtime turns raw outputs into predictions, how tables show it, and
what DeepStream calls it. Nothing outside `edgetl/runtime/tasks/` and `edgetl/tasks/` branches on a kind's name:
it asks the registry (`get_kind`). The torch half (head, loss, distillation) lives in `edgetl/tasks/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from edgetl.errors import EdgetlError

# Metric names where a smaller value is better (errors); everything else is accuracy-like, higher is better.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "loss"})


@dataclass(frozen=True)
class TaskPrediction:
    """One task's prediction for one input; fields that do not apply to the task's kind are None.

    classification: label, index, score (softmax probability of the label), scores (all probabilities).
    multilabel: labels (sigmoid > 0.5), scores (all sigmoid probabilities).
    regression: value (a float, or a list for several targets).
    segmentation: mask (uint8 HxW class indices at the input image's size), areas ({label: share of pixels}).
    detection: boxes (float32 [n, 4] x1, y1, x2, y2 in the input image's pixels), scores, labels (class names)
    and classes (class indices), one entry per object, highest score first.
    """

    task: str
    kind: str
    label: str | None = None
    index: int | None = None
    score: float | None = None
    scores: list[float] | None = None
    labels: list[str] | None = None
    value: float | list[float] | None = None
    mask: Any = None  # numpy uint8 HxW
    areas: dict[str, float] | None = None
    boxes: Any = None  # numpy float32 [n, 4]
    classes: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields that apply, JSON-ready (a mask as nested lists)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items() if v is not None}


def rows_of(out: np.ndarray) -> np.ndarray:
    """A global kind's batched output as [N, width] (a regression's [N] becomes [N, 1])."""
    out = np.asarray(out)
    n = out.shape[0] if out.ndim else 1
    return out.reshape(n, -1)


def is_missing(v) -> bool:
    """A blank cell: None, NaN or an empty string (a row without this task's label)."""
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


class TaskKind:
    """Base of every kind's runtime entry. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    headline: ClassVar[str]  # the metric every table, gate, checkpoint selection and report compares
    metrics_selectable: ClassVar[tuple[str, ...]]  # what `train.select: <task>/<metric>` may name
    has_labels: ClassVar[bool] = True  # a label list (labels/<task>.txt in a bundle)
    stratifies: ClassVar[bool] = False  # splits, subsets and calibration samples are stratified by it
    soft_labels: ClassVar[bool] = False  # mixup / cutmix can mix its targets
    dense: ClassVar[bool] = False  # a target in image coordinates (geometric augmentation moves it too)
    target_geometry: ClassVar[str | None] = None
    # its exported graph decodes after the head (a detector's boxes + NMS): those nodes are never quantized
    float_postprocess: ClassVar[bool] = False  # dense kinds: "mask" (per pixel) or "boxes" (per object)
    deepstream_network_type: ClassVar[int | None] = None  # nvinfer's network-type; None: no DeepStream config
    describe: ClassVar[str] = ""  # one line for `edgetl` docs and errors
    output_formats: ClassVar[tuple[str, ...]] = ()  # what a manifest's task `output_format` may say
    table_label: ClassVar[str] = "acc"  # column header beside a task's name in result tables
    # kind-specific fields of a recipe's task entry that this kind reads (a field another kind owns is an error)
    recipe_fields: ClassVar[frozenset[str]] = frozenset({"labels"})

    # ------------------------------------------------------------------------------------- data rows
    def label_names_in(self, value) -> list[str]:
        """The label names one (present) cell holds, for discovering the label list from the train split."""
        return [str(value).strip()]

    def encode(self, values: list, labels: list[str], task: str, column: str) -> np.ndarray:
        """Raw column values -> the target array; missing labels become -1 / NaN; unknown values are errors."""
        raise NotImplementedError

    def present(self, target: np.ndarray) -> np.ndarray:
        """Which rows carry this task's label."""
        raise NotImplementedError

    def output_size(self, n_labels: int) -> int:
        """Width of the head's output."""
        return n_labels

    # ----------------------------------------------------------------------------------------- metrics
    def metrics(self, output: np.ndarray, target: np.ndarray, labels: list[str], full: bool = False) -> dict:
        raise NotImplementedError

    @property
    def in_points(self) -> bool:
        """Accuracy-like headlines are shown and compared in percentage points; errors in their own units."""
        return self.headline not in LOWER_IS_BETTER

    def headline_score(self, metrics: dict) -> float:
        """Higher is better (errors negated): what the gate and checkpoint selection compare."""
        v = metrics[self.headline]
        return -v if self.headline in LOWER_IS_BETTER else v

    def format_headline(self, value: float | None, unit: bool = False) -> str:
        """'90.40' for accuracy-like metrics (percent), '0.123' (or '0.123 MAE' with `unit`) for errors."""
        if value is None:
            return "-"
        if self.in_points:
            return f"{100 * value:.2f}"
        return f"{value:.3f}" + (f" {self.headline.upper()}" if unit else "")

    def eval_line(self, m: dict) -> str:
        """One line of `edgetl eval` for this task's metrics."""
        raise NotImplementedError

    def describe_prediction(self, d: dict) -> str:
        """One prediction (its `to_dict()`) in a few words, for `edgetl predict`."""
        return f"{d.get('label', d.get('labels', d.get('value')))}" + (f" ({d['score']:.3f})" if "score" in d else "")

    # ---------------------------------------------------------------------------- quantization gate
    def damage(self, ref: np.ndarray, got: np.ndarray) -> float:
        """How far quantized outputs are from the FP32 ones (0 = identical); rows are examples."""
        raise NotImplementedError

    def agreement(self, ref: np.ndarray, got: np.ndarray) -> float | None:
        """Share of examples where both give the same decision (None where a kind has no discrete decision)."""
        return None

    def outputs_match(self, torch_out: np.ndarray, onnx_out: np.ndarray, atol: float) -> tuple[float, bool]:
        """Export verification of one output: (max |difference|, passed): within atol, same decisions."""
        diff = float(np.abs(np.asarray(onnx_out) - torch_out).max()) if np.size(torch_out) else 0.0
        agree = self.agreement(torch_out, onnx_out)
        return diff, diff <= atol and (agree is None or agree >= 1.0)

    # --------------------------------------------------------------------------------------- runtime
    def output_names(self, output: str, output_format: str | None) -> list[str]:
        """The model outputs one task reads (most kinds: one, named like the task)."""
        return [output]

    def join_outputs(self, output: str, named: dict, output_format: str | None) -> np.ndarray:
        """The task's model outputs (by name) -> the one array its metrics, gate and decoding read."""
        return np.asarray(named[output])

    def decode(
        self,
        task: str,
        out: np.ndarray,
        labels: tuple[str, ...],
        sizes: list | None = None,
        options: dict | None = None,
    ) -> list[TaskPrediction]:
        """Raw batched outputs `[N, ...]` -> one prediction per input (numpy only); `sizes`: each input image's
        original (height, width), for kinds whose prediction is in image coordinates; `options`: the bundle's
        settings of the task and the input (image_size, resize), overridable per call."""
        raise NotImplementedError

    def check_output_width(self, task: str, width: int, labels: tuple[str, ...], manifest: str) -> None:
        """A model output whose width disagrees with the manifest's labels is refused in one line."""
        if self.has_labels and width != len(labels):
            raise EdgetlError(
                f"task {task!r}: the model gives {width} scores but {manifest} lists {len(labels)} labels"
            )

    # --------------------------------------------------------------------------------- summary
    def train_description(self, target: np.ndarray, labels: list[str]) -> dict:
        """What the start-of-run summary records about the train split's targets."""
        raise NotImplementedError

    def summary_text(self, entry: dict) -> str:
        """The summary line's description of `train_description`'s dict."""
        raise NotImplementedError

    def manifest_fields(self, spec) -> dict:
        """Kind-specific fields of the bundle manifest's task entry, from the recipe's task entry `spec`."""
        return {}

    # ------------------------------------------------------------------------------------- DeepStream
    def deepstream_network(self, task: dict) -> int | None:
        """nvinfer's network-type for this task as the manifest describes it (None: no parser of its own)."""
        return self.deepstream_network_type

    def deepstream_properties(self, task: dict) -> dict[str, str]:
        """Extra nvinfer [property] keys this task's parser needs."""
        return {}
