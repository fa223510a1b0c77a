"""The recipe: one validated YAML file that says what to train, on what, and how to export it.

Everything downstream reads the validated `Recipe`, never the raw YAML. Unknown keys and bad values are
`EdgetlError`s naming the key and the allowed values; YAML is loaded with `yaml.safe_load` only, so a
recipe can never construct Python objects or run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from edgetl import yaml_model
from edgetl.errors import EdgetlError
from edgetl.runtime.tasks import get_kind, kind_recipe_fields
from edgetl.yaml_model import validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------------- backbone
class BackboneSpec(_Strict):
    """Which pretrained network to start from, and where its weights come from.

    weights: `offline` (weights shipped in an installed package), `imagenet` (torchvision/timm download),
    `hub` (Hugging Face hub / timm hub), `none` (random init, for from-scratch baselines), or a path to a
    local file (.safetensors preferred; .pt/.pth are read with torch.load(weights_only=True)) or directory.
    """

    name: str
    weights: str = "offline"
    pooling: Literal["avg", "cls", "mean"] = "avg"


# ------------------------------------------------------------------------------------------------------ input
class ImageInput(_Strict):
    kind: Literal["image"] = "image"
    image_size: Annotated[int, Field(ge=8, le=1024)] = 224
    channels: Literal[3] = 3  # pretrained backbones take RGB; grey images are repeated to 3 channels
    mean: list[float] | None = None  # None: the backbone's pretrained config
    std: list[float] | None = None
    # How images reach image_size (training, evaluation, export, runtime alike): squash = bilinear to a square;
    # shorter_crop = shorter side to image_size / crop_pct, antialiased, then a centred crop (how pretrained
    # backbones are evaluated); auto = shorter_crop for image files, squash for the built-in datasets.
    resize: Literal["auto", "squash", "shorter_crop", "letterbox"] = "auto"
    crop_pct: Annotated[float, Field(gt=0.3, le=1.0)] | None = None  # None: the backbone's (0.875 = 256 -> 224)

    @field_validator("mean", "std")
    @classmethod
    def _three(cls, v):
        if v is not None and len(v) not in (1, 3):
            raise ValueError("must have 1 or 3 values")
        return v


class TextInput(_Strict):
    kind: Literal["text"] = "text"
    tokenizer: str | None = None  # None: the backbone's own tokenizer
    max_length: Annotated[int, Field(ge=4, le=4096)] = 128


# ------------------------------------------------------------------------------------------------------ tasks
# A task kind is a name in the task-kind registry (edgetl.runtime.tasks); the registry says what each kind is.
TaskKind = str


class TaskSpec(_Strict):
    """One head on the shared backbone.

    column: where its labels come from in the data (a manifest column, or a built-in dataset's label set,
    e.g. `label` / `group` for fashion-mnist). Defaults to the task name.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    kind: TaskKind = "classification"
    column: str | None = None
    labels: list[str] | None = None  # fixed label order; None: discovered from the training split
    weight: Annotated[float, Field(gt=0)] = 1.0
    dataset: str | None = None  # multi-dataset recipes: which `data.extra` entry carries this task
    # segmentation only (each kind accepts its own fields: edgetl.runtime.tasks, `recipe_fields`)
    ignore_index: Annotated[int, Field(ge=0, le=65535)] | None = None  # mask value counted nowhere (default 255)
    dice_weight: Annotated[float, Field(ge=0)] | None = None  # add dice loss x this to cross-entropy (default 0)
    class_weights: list[Annotated[float, Field(ge=0)]] | None = None  # cross-entropy weight per class
    # segmentation: exported uint8 argmax map (classmap, default) or logits; detection: decoded boxes after NMS
    # in the graph (nms, default; EfficientNMS_TRT's layout) or the raw head (raw)
    output_format: Literal["classmap", "logits", "nms", "raw"] | None = None
    decoder: Literal["fpn", "lraspp"] | None = None  # dense head: edgetl's FPN (default) or torchvision's LR-ASPP
    # detection only: NMS settings baked into the exported graph (defaults 0.05, 0.6, 100) and the focal loss alpha
    score_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    iou_threshold: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_detections: Annotated[int, Field(ge=1, le=1000)] | None = None
    focal_alpha: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, v: str) -> str:
        try:
            get_kind(v)
        except EdgetlError as e:
            raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _fields_of_its_kind(self):
        kind = get_kind(self.kind)
        for f in sorted(kind_recipe_fields() - kind.recipe_fields):
            if getattr(self, f) is not None:
                raise ValueError(f"task {self.name!r}: {f} does not apply to a {self.kind} task")
        if self.output_format is not None and self.output_format not in kind.output_formats:
            allowed = ", ".join(kind.output_formats)
            raise ValueError(
                f"task {self.name!r}: output_format {self.output_format!r}; a {self.kind} task takes {allowed}"
            )
        return self

    @property
    def label_column(self) -> str:
        return self.column or self.name


# ------------------------------------------------------------------------------------------------------- data
class DataSource(NamedTuple):
    """One `data.source` value: the input kind its examples are (None: either, by the manifest's columns) and
    whether it reads files under `data.path` (image files get the photo resize, `input.resize: auto`)."""

    input_kind: Literal["image", "text"] | None
    files: bool


# Every data source, once: the recipe's checks, train/checks.py and data/eval_resize.py read this table.
DATA_SOURCES: dict[str, DataSource] = {
    "fashion-mnist": DataSource("image", files=False),
    "digits": DataSource("image", files=False),
    "bbc-news": DataSource("text", files=False),
    "fashion-scenes": DataSource("image", files=False),  # segmentation demo generated from fashion-mnist
    "fashion-detect": DataSource("image", files=False),  # detection demo generated from fashion-mnist
    "coco": DataSource("image", files=True),  # a COCO JSON file (data.path); images beside it or in images/
    "yolo": DataSource("image", files=True),  # an Ultralytics folder: images/ + labels/ (data.path)
    "imagefolder": DataSource("image", files=True),
    "csv": DataSource(None, files=True),
    "jsonl": DataSource(None, files=True),
    "webdataset": DataSource("image", files=True),
}
BUILTIN_DATASETS = tuple(name for name, src in DATA_SOURCES.items() if not src.files)


class SplitSpec(_Strict):
    val_fraction: Annotated[float, Field(ge=0.0, lt=0.9)] = 0.1
    test_fraction: Annotated[float, Field(ge=0.0, lt=0.9)] = 0.1  # used only when the source has no test split
    limit_train: Annotated[int, Field(ge=1)] | None = None  # stratified subset sizes (after splitting)
    limit_val: Annotated[int, Field(ge=1)] | None = None
    limit_test: Annotated[int, Field(ge=1)] | None = None
    # Column the split and the subsets are stratified by (None: the first classification task's column).
    # Runs with different task sets but the same `stratify` get the same rows, so they can be compared.
    stratify: str | None = None
    # Seed of the split and subsets (None: train.seed). Fix it to train several seeds on the same rows
    # (paired comparisons, a teacher and its students on one labelled subset).
    seed: int | None = None


AUGMENT_PARAMS = {
    "hflip": (),
    "random_resized_crop": ("scale", "ratio"),
    "color_jitter": ("brightness", "contrast", "saturation", "hue"),
    "trivial_augment": (),
    "randaugment": ("num_ops", "magnitude"),
    "mixup": ("alpha",),
    "cutmix": ("alpha",),
}


class AugmentStep(_Strict):
    """One item of `data.augment: [...]`: a name (`hflip`) or a mapping (`{name: random_resized_crop,
    scale: [0.5, 1.0]}`, or `{random_resized_crop: {scale: [0.5, 1.0]}}`). Built on torchvision.transforms.v2."""

    name: Literal["hflip", "random_resized_crop", "color_jitter", "trivial_augment", "randaugment", "mixup", "cutmix"]
    scale: tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]] = (0.08, 1.0)
    ratio: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (3 / 4, 4 / 3)
    brightness: Annotated[float, Field(ge=0)] = 0.4
    contrast: Annotated[float, Field(ge=0)] = 0.4
    saturation: Annotated[float, Field(ge=0)] = 0.4
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    num_ops: Annotated[int, Field(ge=1, le=10)] = 2
    magnitude: Annotated[int, Field(ge=0, le=30)] = 9
    alpha: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, v):
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "name" not in v and len(v) == 1:
            ((name, params),) = v.items()
            return {"name": name, **(params or {})}
        return v

    @model_validator(mode="after")
    def _own_params(self):
        # a setting of another step is an error unless it is that field's default (a dumped recipe has them all)
        extra = sorted(
            k
            for k in self.model_fields_set - {"name"} - set(AUGMENT_PARAMS[self.name])
            if getattr(self, k) != AugmentStep.model_fields[k].default
        )
        if extra:
            own = ", ".join(AUGMENT_PARAMS[self.name]) or "none"
            raise ValueError(f"{self.name} takes no {extra[0]!r} (its settings: {own})")
        if self.scale[0] > self.scale[1] or self.ratio[0] > self.ratio[1]:
            raise ValueError(f"{self.name}: a range must be [low, high]")
        return self


class DataSpec(_Strict):
    """Where the examples are.

    source: a built-in dataset name, or a format (`imagefolder`, `csv`, `jsonl`) with `path`.
    """

    source: str
    path: str | None = None
    path_column: str = "path"  # csv/jsonl image manifests
    text_column: str = "text"  # csv/jsonl text manifests
    split_column: str | None = None  # optional column with train/val/test per row
    # segmentation masks: a folder mirroring an image folder (`masks`, same relative path, .png), or a manifest
    # column of mask paths (`mask_column`, relative to the manifest); the task's `column` then names it
    masks: str | None = None
    mask_column: str | None = None
    # detection boxes in a csv/jsonl manifest: a column of [{"label": name, "box": [x1, y1, x2, y2]}, ...] in the
    # image's pixels (JSON text in a CSV cell); the task's `column` then names it
    boxes_column: str | None = None
    split: SplitSpec = SplitSpec()
    # A row without a label in a single-task recipe: `error` (name the file and rows) or `skip` (drop the rows
    # and report how many). Multi-task / multi-dataset recipes mask a missing label out of that task only.
    missing_labels: Literal["error", "skip"] = "error"
    download: bool = False  # allow torchvision's online downloader when local files are missing
    # none | hflip | a list of steps (see AugmentStep): hflip, random_resized_crop, color_jitter,
    # trivial_augment, randaugment, mixup, cutmix
    augment: Annotated[
        Annotated[Literal["none", "hflip"], Tag("word")] | Annotated[list[AugmentStep], Tag("list")],
        Discriminator(lambda v: "list" if isinstance(v, list) else "word"),  # errors of the form given only
    ] = "none"
    # Image folders / manifests: processes that decode images ahead of training (auto: CPUs - 1, at most 8;
    # 0: decode in the training process). Built-in in-memory datasets need none.
    workers: Literal["auto"] | Annotated[int, Field(ge=0, le=64)] = "auto"
    # Image folders / manifests: keep each decoded image at the working size after the first epoch (ram), or in
    # a memory-mapped file reused by later runs on the same files (disk, ~/.cache/edgetl/images).
    cache: Literal["none", "ram", "disk"] = "none"
    # Multi-dataset recipes: this source's share of each training epoch, relative to the other sources'
    # (set it on every source or on none; none: proportional to the sources' training-split sizes).
    ratio: Annotated[float, Field(gt=0)] | None = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v not in DATA_SOURCES:
            raise ValueError(f"unknown data source {v!r}; allowed: {', '.join(DATA_SOURCES)}")
        return v

    @model_validator(mode="after")
    def _needs_path(self):
        if DATA_SOURCES[self.source].files and not self.path:
            raise ValueError(f"data.path is required for source {self.source!r}")
        return self


# -------------------------------------------------------------------------------------------------- training
class FreezeSpec(_Strict):
    """Which backbone stages train.

    none: full fine-tune. linear_probe: whole backbone frozen. first_k: the first `stages` stages frozen.
    gradual: start with the backbone frozen and unfreeze one more stage from the top every `every` epochs.
    """

    policy: Literal["none", "linear_probe", "first_k", "gradual"] = "none"
    stages: Annotated[int, Field(ge=0)] = 0
    every: Annotated[int, Field(ge=1)] = 1
    freeze_bn: bool = True  # frozen stages keep their BatchNorm running statistics


class TrainSpec(_Strict):
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 3
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3
    head_lr: Annotated[float, Field(gt=0, le=10)] | None = None  # None: same as lr
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = None  # LR scale per stage from the top
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: int = 0
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision on CUDA only
    freeze: FreezeSpec = FreezeSpec()
    feature_cache: Literal["auto", "off", "memory", "disk"] = "auto"
    select_metric: str = "mean_accuracy"  # checkpoint selection: mean_accuracy, loss, or <task>/accuracy
    num_threads: Annotated[int, Field(ge=1)] | None = None
    checkpoint_every_steps: Annotated[int, Field(ge=1)] | None = None  # mid-epoch checkpoints for resume


class UnlabeledSpec(_Strict):
    """Extra images (or texts) the student learns from through the teacher's soft targets only.

    source: `self` (the labelled train rows again, without their labels), a built-in dataset name (its
    training rows that are in none of the labelled train/val/test rows), `folder` (every image under `path`,
    no class sub-folders needed), or a `csv` / `jsonl` manifest without label columns. `limit`: at most this
    many rows, a seeded sample.
    """

    source: str
    path: str | None = None
    path_column: str = "path"
    text_column: str = "text"
    limit: Annotated[int, Field(ge=1)] | None = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        allowed = ("self", *BUILTIN_DATASETS, "folder", "csv", "jsonl")
        if v not in allowed:
            raise ValueError(f"unknown unlabeled source {v!r}; allowed: {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _needs_path(self):
        if self.source in ("folder", "csv", "jsonl") and not self.path:
            raise ValueError(f"distill.unlabeled.path is required for source {self.source!r}")
        return self


class DistillSpec(_Strict):
    """Knowledge distillation from a frozen teacher (an earlier run dir, or a backbone spec)."""

    teacher: str | BackboneSpec
    # extra train rows without labels (the teacher's soft targets only); `self` is short for {source: self}
    unlabeled: UnlabeledSpec | None = None
    temperature: Annotated[float, Field(gt=0)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5  # weight of the distillation term
    feature: Literal["none", "mse", "cosine"] = "none"
    feature_weight: Annotated[float, Field(ge=0)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _teacher_first(cls, v):
        if isinstance(v, dict) and v.get("unlabeled") is not None and v.get("teacher") is None:
            raise ValueError(
                "distill.unlabeled is learnt from through a teacher's outputs only: set distill.teacher "
                "(an earlier run dir or a backbone spec)"
            )
        return v

    @field_validator("unlabeled", mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"source": v} if isinstance(v, str) else v


# ---------------------------------------------------------------------------------------------------- export
class CalibrationSpec(_Strict):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    size: Annotated[int, Field(ge=1, le=100_000)] = 256  # stratified sample of the training split


class QatSpec(_Strict):
    """Quantization-aware training (modelopt torch) after PTQ, for CPU INT8 (`int8-qat`).

    never: off (export still says when PTQ missed the budget). auto: only when the PTQ gate failed, or passed
    only by keeping layers in float. always: whenever INT8 is exported. `--qat` forces it for one export.
    """

    mode: Literal["never", "auto", "always"] = "never"
    epochs: Annotated[int, Field(ge=1, le=100)] = 2
    lr: Annotated[float, Field(gt=0, le=0.1)] = 1e-4  # small: the weights only adapt to INT8 rounding
    max_steps: Annotated[int, Field(ge=1)] | None = None  # cap on optimizer steps over all epochs


class ExportSpec(_Strict):
    opset: Annotated[int, Field(ge=17, le=23)] = 17
    atol: Annotated[float, Field(gt=0)] = 1e-4  # ONNX vs PyTorch max abs difference allowed
    verify_samples: Annotated[int, Field(ge=1)] = 256
    target: Literal["auto", "cpu", "tensorrt", "all"] = "auto"  # INT8 for: auto = TensorRT if usable here, else CPU
    calibration: CalibrationSpec = CalibrationSpec()
    max_drop: Annotated[float, Field(ge=0, le=100)] = 1.0  # accuracy points per task (the gate)
    qat: QatSpec = QatSpec()


# ---------------------------------------------------------------------------------------------------- recipe
class Recipe(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: str = ""
    backbone: BackboneSpec
    input: ImageInput | TextInput = Field(default_factory=ImageInput, discriminator="kind")
    tasks: Annotated[list[TaskSpec], Field(min_length=1)]
    data: DataSpec
    extra_data: dict[str, DataSpec] = {}
    train: TrainSpec = TrainSpec()
    distill: DistillSpec | None = None
    export: ExportSpec = ExportSpec()

    @model_validator(mode="after")
    def _consistent(self):
        names = [t.name for t in self.tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate task names: {', '.join(sorted(dup))}")
        for t in self.tasks:
            if t.dataset is not None and t.dataset not in self.extra_data:
                raise ValueError(f"task {t.name!r} uses dataset {t.dataset!r}, not declared in extra_data")
        held = DATA_SOURCES[self.data.source].input_kind
        if self.input.kind == "image" and held == "text":
            raise ValueError(f"data.source {self.data.source!r} is text but input.kind is 'image'")
        if self.input.kind == "text" and held == "image":
            raise ValueError(f"input.kind is 'text' but data.source {self.data.source!r} holds images")
        dense = [t for t in self.tasks if get_kind(t.kind).dense]
        if dense and self.input.kind != "image":
            raise ValueError(f"task {dense[0].name!r} is {dense[0].kind}: it needs image input, not {self.input.kind}")
        if dense and self.input.resize == "shorter_crop":
            raise ValueError(
                f"input.resize: shorter_crop crops the image but task {dense[0].name!r} ({dense[0].kind}) predicts "
                "every pixel of it; use squash (or auto)"
            )
        steps = [] if isinstance(self.data.augment, str) else [s.name for s in self.data.augment]
        policies = [n for n in steps if n in ("trivial_augment", "randaugment")]
        if dense and policies:
            raise ValueError(
                f"data.augment: {policies[0]} cannot move task {dense[0].name!r}'s masks (torchvision's auto-augment "
                "policies refuse tv_tensors.Mask); use hflip, random_resized_crop and color_jitter"
            )
        if steps and self.input.kind != "image":
            raise ValueError(f"data.augment: {steps[0]} augments images but input.kind is 'text'")
        mixing = [n for n in steps if n in ("mixup", "cutmix")]
        if mixing and (len(self.tasks) != 1 or not get_kind(self.tasks[0].kind).soft_labels):
            raise ValueError(
                f"data.augment: {mixing[0]} mixes labels: only for one single-label classification task "
                f"(this recipe has {', '.join(f'{t.name} ({t.kind})' for t in self.tasks)})"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------------------------------ loading + errors
def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.epochs=3` -> (['train', 'epochs'], 3). The value is parsed as YAML (safe): 3, 1e-3, true, [a, b]."""
    if "=" not in text:
        raise EdgetlError(f"override {text!r} is not key=value (e.g. train.epochs=3)")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise EdgetlError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, RecursionError):
        value = raw  # not YAML (or a bad !!tag): the text itself
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set nested keys (creating dicts as needed); list items by index: `tasks.0.weight=2`."""
    for text in overrides:
        path, value = parse_override(text)
        cur: Any = data
        for i, part in enumerate(path[:-1]):
            nxt = _child(cur, part, text)
            if nxt is None:
                nxt = {}
                _set(cur, part, nxt, text)
            elif not isinstance(nxt, (dict, list)):
                raise EdgetlError(f"override {text!r}: {'.'.join(path[: i + 1])} is a value, not a section")
            cur = nxt
        _set(cur, path[-1], value, text)
    return data


def _index(part: str) -> bool:
    return part.isascii() and part.isdigit()  # not str.isdigit alone: '²' is a digit that int() refuses


def _child(cur, part, text):
    if isinstance(cur, list):
        if not _index(part) or int(part) >= len(cur):
            raise EdgetlError(f"override {text!r}: index {part!r} out of range (0..{len(cur) - 1})")
        return cur[int(part)]
    return cur.get(part)


def _set(cur, part, value, text):
    if isinstance(cur, list):
        if not _index(part) or int(part) >= len(cur):
            raise EdgetlError(f"override {text!r}: index {part!r} out of range (0..{len(cur) - 1})")
        cur[int(part)] = value
    else:
        cur[part] = value


_INPUT_TAGS: dict[str, type[BaseModel]] = {"image": ImageInput, "text": TextInput}  # the `input.kind` union's tags
_HIDDEN_TAGS = frozenset({"list", "word"})  # data.augment's union tags: not keys a user wrote


def recipe_from_dict(data: Any, source: str = "<recipe>", overrides: list[str] | None = None) -> Recipe:
    """Validate a recipe mapping; `overrides` (already applied) only route error messages to the argument."""
    return validate(Recipe, data, source, "recipe", overrides=overrides, tags=_INPUT_TAGS, hidden=_HIDDEN_TAGS)


def read_yaml(path: str | Path) -> Any:
    """Parse a recipe file: a regular file of at most 1 MB (checked before reading), YAML safe_load only."""
    from edgetl.runtime.limits import MAX_RECIPE_BYTES

    return yaml_model.read_yaml(path, "recipe", MAX_RECIPE_BYTES)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file (relative data paths are relative to the working directory)."""
    data = read_yaml(path)
    if isinstance(data, dict):
        data = yaml_model.plain_data(data, str(path))  # plain types only (dates etc. become strings)
        apply_overrides(data, list(overrides or []))
    return recipe_from_dict(data, str(path), list(overrides or []))
