"""Where training metrics go besides metrics.jsonl: TensorBoard (when installed) or nowhere.

Only the run's main process logs (rank 0 under torchrun). TensorBoard gets scalars per task, losses, learning
rates per parameter group, and the validation confusion matrix of the best epoch as an image at the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError


class NullLogger:
    def log_epoch(self, row: dict) -> None:
        pass

    def log_confusion(self, task: str, matrix: np.ndarray, labels: list[str], step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger(NullLogger):
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise EdgetlError("--logger tensorboard needs tensorboard: pip install 'edgetl[tensorboard]'") from None
        self.writer = SummaryWriter(str(log_dir))

    def log_epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        w = self.writer
        w.add_scalar("loss/train", row["train_loss"], step)
        w.add_scalar("loss/val", row["val_loss"], step)
        w.add_scalar("score", row["score"], step)
        for i, lr in enumerate(row.get("lr", [])):
            w.add_scalar(f"lr/group{i}", lr, step)
        for task, metrics in row.get("val", {}).items():
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "n":
                    w.add_scalar(f"{task}/{k}", v, step)
        w.flush()

    def log_confusion(self, task: str, matrix: np.ndarray, labels: list[str], step: int) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{task}: validation confusion matrix")
        fig.tight_layout()
        self.writer.add_figure(f"{task}/confusion_matrix", fig, step)
        plt.close(fig)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_logger(kind: str, run_dir: Path) -> NullLogger:
    if kind == "none":
        return NullLogger()
    if kind == "tensorboard":
        return TensorBoardLogger(run_dir / "tensorboard")
    if kind == "auto":
        try:
            return TensorBoardLogger(run_dir / "tensorboard")
        except EdgetlError:
            return NullLogger()
    raise EdgetlError(f"--logger {kind!r}: allowed tensorboard, none, auto")
