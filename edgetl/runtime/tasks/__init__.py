"""The task-kind registry, torch-free half: one entry per kind, asked by every module that needs a kind's rules.

Adding a kind: one module here (numpy: encoding, metrics, gate damage, decoding), one in `edgetl/tasks/` (torch:
head, loss, distillation), and one line in each registry. `get_kind` is the only way in; an unknown kind is a
one-line error, never a fall-through.
"""

from __future__ import annotations

import difflib

from edgetl.errors import EdgetlError
from edgetl.runtime.tasks.base import LOWER_IS_BETTER, TaskKind, TaskPrediction, is_missing
from edgetl.runtime.tasks.classification import Classification
from edgetl.runtime.tasks.detection import Detection
from edgetl.runtime.tasks.multilabel import Multilabel
from edgetl.runtime.tasks.regression import Regression
from edgetl.runtime.tasks.segmentation import Segmentation

__all__ = [
    "LOWER_IS_BETTER",
    "TaskKind",
    "TaskPrediction",
    "get_kind",
    "is_missing",
    "kind_names",
    "kind_recipe_fields",
    "output_names",
    "register_kind",
    "task_outputs",
]

_KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Add a kind; a second kind of the same name is an error (as torchvision does for models)."""
    if kind.name in _KINDS:
        raise ValueError(f"task kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


for _k in (Classification(), Multilabel(), Regression(), Segmentation(), Detection()):
    register_kind(_k)


def kind_names() -> tuple[str, ...]:
    return tuple(_KINDS)


def kind_recipe_fields() -> frozenset[str]:
    """Every kind-specific field of a recipe's task entry (each kind accepts its own subset)."""
    return frozenset().union(*(k.recipe_fields for k in _KINDS.values()))


def get_kind(name: str) -> TaskKind:
    """The registry entry of a task kind; an unknown name is one line listing the known ones."""
    kind = _KINDS.get(name)
    if kind is None:
        close = difflib.get_close_matches(str(name), list(_KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EdgetlError(f"unknown task kind {name!r}{hint}; known kinds: {', '.join(_KINDS)}")
    return kind


def task_outputs(tasks, named: dict) -> dict:
    """Model outputs by name -> one array per task (`tasks`: (name, kind, output name, output_format) tuples);
    a detection task's four EfficientNMS-layout outputs become one [N, K, 6] array."""
    return {name: get_kind(kind).join_outputs(output, named, fmt) for name, kind, output, fmt in tasks}


def output_names(tasks) -> list[str]:
    """Every model output the tasks read, in task order (`tasks` as for `task_outputs`)."""
    return [n for _name, kind, output, fmt in tasks for n in get_kind(kind).output_names(output, fmt)]
