"""The task-kind registry, torch half: head, loss and distillation of each kind (numpy half:
`edgetl.runtime.tasks`). `get_task_kind` is the only way in; an unknown kind is one line."""

from __future__ import annotations

from edgetl.runtime.tasks import get_kind
from edgetl.tasks.base import TorchTaskKind
from edgetl.tasks.classification import Classification
from edgetl.tasks.detection import Detection
from edgetl.tasks.multilabel import Multilabel
from edgetl.tasks.regression import Regression
from edgetl.tasks.segmentation import Segmentation

__all__ = ["TorchTaskKind", "get_task_kind", "register_task_kind"]

_TORCH_KINDS: dict[str, TorchTaskKind] = {}


def register_task_kind(kind: TorchTaskKind) -> TorchTaskKind:
    """Add a kind's torch half; its numpy half must be registered first (`edgetl.runtime.tasks.register_kind`)."""
    get_kind(kind.name)
    if kind.name in _TORCH_KINDS:
        raise ValueError(f"task kind {kind.name!r} already has a torch half")
    _TORCH_KINDS[kind.name] = kind
    return kind


for _k in (Classification(), Multilabel(), Regression(), Segmentation(), Detection()):
    register_task_kind(_k)


def get_task_kind(name: str) -> TorchTaskKind:
    get_kind(name)  # unknown names: the runtime registry's one-line error
    kind = _TORCH_KINDS.get(name)
    if kind is None:
        raise ValueError(f"task kind {name!r} has no torch half (register_task_kind)")
    return kind
