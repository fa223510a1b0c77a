"""TensorBoard logging: scalars per task and learning rates each epoch, the confusion matrix at the end."""

import pytest

from edgetl.errors import EdgetlError
from edgetl.train.loggers import make_logger


def test_tensorboard_events_written(tmp_path, tiny_recipe):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from edgetl.train.loop import train

    run = train(
        tiny_recipe(**{"data.split.limit_train": 96, "data.split.limit_val": 48}),
        runs_dir=tmp_path,
        progress=False,
        logger="tensorboard",
    )
    acc = EventAccumulator(str(run.dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/train", "loss/val", "digit/accuracy", "lr/group0"} <= set(tags["scalars"])
    assert acc.Scalars("digit/accuracy")[0].step == 1
    assert "digit/confusion_matrix" in tags["images"]


def test_unknown_logger_is_one_line(tmp_path):
    with pytest.raises(EdgetlError, match="--logger 'wandb': allowed tensorboard, none, auto"):
        make_logger("wandb", tmp_path)
