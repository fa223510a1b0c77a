"""Object boxes per image, as every detection source yields them, and their move to the model's working size.

A source (COCO JSON, YOLO txt folders, a CSV/JSONL boxes column, the built-in `fashion-detect` scenes) lists
per image: its original (height, width), its boxes in original pixels (x1, y1, x2, y2) and their class
indices. `BoxTable.at_size` turns them into the training/evaluation target: one float32 array
`[N, M, 5]` (class, x1, y1, x2, y2) in the model input's pixels after the recipe's resize policy (stretch or
letterbox, `edgetl.runtime.crop.box_geometry`, the function the runtime inverts), padded with class -1 rows.
Small (20 bytes a box): it stays in memory while the images stay files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgetl.runtime.crop import box_geometry

PAD = -1.0  # the class of a padding row of a box target
MAX_BOXES = 100  # boxes kept per image (the largest first beyond it; COCO's own detection limit)


@dataclass
class BoxTable:
    """Per-image boxes of one detection column; rows line up with the dataset's images."""

    sizes: np.ndarray  # int64 [N, 2]: original (height, width)
    boxes: list[np.ndarray]  # float32 [n_i, 4] x1, y1, x2, y2 in original pixels
    classes: list[np.ndarray]  # int64 [n_i] class indices into the column's class names
    clipped: int = 0  # boxes partly outside their image, clipped when listed (the start-of-run summary says so)

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, idx) -> BoxTable:
        idx = [int(i) for i in idx]
        return BoxTable(self.sizes[idx], [self.boxes[i] for i in idx], [self.classes[i] for i in idx], self.clipped)

    def at_size(self, size: int, resize: str) -> np.ndarray:
        """float32 [N, M, 5] (class, x1, y1, x2, y2) in a size x size model input, padded with class -1."""
        m = max([len(b) for b in self.boxes] + [1])
        if m > MAX_BOXES:
            crowded = sum(len(b) > MAX_BOXES for b in self.boxes)
            logging.getLogger("edgetl").warning(
                "%d image(s) have more than %d boxes: the %d largest of each are kept", crowded, MAX_BOXES, MAX_BOXES
            )
            m = MAX_BOXES
        out = np.zeros((len(self.boxes), m, 5), dtype=np.float32)
        out[:, :, 0] = PAD
        for i, (b, c) in enumerate(zip(self.boxes, self.classes)):
            if not len(b):
                continue
            h, w = (int(v) for v in self.sizes[i])
            sx, sy, ox, oy = box_geometry(h, w, size, resize)
            moved = np.asarray(b, dtype=np.float32) * np.array([sx, sy, sx, sy], np.float32)
            moved += np.array([ox, oy, ox, oy], np.float32)
            if len(moved) > m:  # the largest boxes are kept
                keep = np.argsort(-(moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1]), kind="stable")[:m]
                moved, c = moved[np.sort(keep)], np.asarray(c)[np.sort(keep)]
            out[i, : len(moved), 0] = c
            out[i, : len(moved), 1:] = moved
        return out
