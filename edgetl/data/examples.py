"""In-memory containers for examples and their per-task targets.

Images stay uint8 (small, exact) until a batch is pre-processed; images from files stay paths (`files`,
decoded on demand by `edgetl.data.lazy`) so memory does not grow with the dataset; targets are encoded per task:
classification int64 with -1 = missing, multilabel float32 multi-hot with NaN rows = missing,
regression float32 with NaN = missing, segmentation uint8 class maps [N, H, W] (255 = ignored; lazy `MaskFiles`
for masks on disk). Missing targets are masked out of losses and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgetl.data.lazy import ImageFiles
from edgetl.data.masks import take_rows


@dataclass
class RawDataset:
    """What a source yields before tasks are encoded: inputs + raw label columns (+ an optional split)."""

    kind: str  # "image" | "text"
    name: str
    images: np.ndarray | None = None  # uint8 [N, H, W, C] when every image has one size
    image_list: list[np.ndarray] | None = None  # uint8 arrays of varying sizes
    files: ImageFiles | None = None  # images decoded on demand (image folders, manifests)
    texts: list[str] | None = None
    columns: dict[str, list] = field(default_factory=dict)
    split: np.ndarray | None = None  # per-row "train" / "val" / "test" when the source defines one
    sources: list[str] | None = None  # per-row file path, for duplicate checks and error messages
    class_names: dict[str, list[str]] = field(default_factory=dict)  # canonical label order per column
    # per-pixel targets per column (segmentation masks): uint8 [N, H, W] in memory, or lazy `MaskFiles`
    dense: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        if self.images is not None:
            return len(self.images)
        if self.image_list is not None:
            return len(self.image_list)
        if self.files is not None:
            return len(self.files)
        return len(self.texts or [])


@dataclass
class Examples:
    kind: str
    targets: dict[str, np.ndarray]
    images: np.ndarray | None = None
    image_list: list[np.ndarray] | None = None
    files: ImageFiles | None = None
    texts: list[str] | None = None
    index: np.ndarray | None = None  # rows of the RawDataset these came from
    dataset: np.ndarray | None = None  # multi-dataset recipes: per-row source id (0 = data, 1.. = extra_data in order)

    def __len__(self) -> int:
        if self.images is not None:
            return len(self.images)
        if self.image_list is not None:
            return len(self.image_list)
        if self.files is not None:
            return len(self.files)
        return len(self.texts or [])

    def take(self, idx: np.ndarray) -> Examples:
        idx = np.asarray(idx, dtype=np.int64)
        return Examples(
            kind=self.kind,
            targets={k: take_rows(v, idx) for k, v in self.targets.items()},
            images=None if self.images is None else self.images[idx],
            image_list=None if self.image_list is None else [self.image_list[i] for i in idx],
            files=None if self.files is None else self.files.take(idx),
            texts=None if self.texts is None else [self.texts[i] for i in idx],
            index=None if self.index is None else self.index[idx],
            dataset=None if self.dataset is None else self.dataset[idx],
        )

    def inputs(self, idx) -> np.ndarray | list:
        """Raw inputs for rows `idx` (uint8 images or strings), as the runtime would receive them."""
        if self.images is not None:
            return self.images[idx]
        if self.image_list is not None:
            return [self.image_list[i] for i in idx]
        if self.files is not None:  # decoded now, at the working size
            return [self.files.load(i) for i in idx]
        return [self.texts[i] for i in idx]


@dataclass
class DataSplits:
    train: Examples
    val: Examples
    test: Examples
    labels: dict[str, list[str]]  # per task; [] for regression
    info: dict  # split definition: sizes, seeds, source indices, warnings
