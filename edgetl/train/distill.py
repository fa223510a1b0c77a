"""The frozen teacher of a distillation recipe, and the student's training-only feature projection.

`distill.teacher` is either an earlier run (its best checkpoint: task heads + backbone), whose tasks must
match the student's (name, kind and labels), or a backbone spec (pretrained features only: no task heads, so
only feature distillation applies and `distill.feature` must be mse or cosine).

Logit distillation (per task, KL at temperature T times T^2, mixed with the hard-label loss by alpha) lives
in `losses.kd_loss`. Feature distillation maps the student's pooled features through a learned linear
projection to the teacher's feature width and compares (MSE or 1 - cosine). The projection exists only
during training: it is not part of the model, so it is never exported.

The teacher may be any family and resolution (e.g. EfficientNet-Lite0 at 128 px teaching MobileNetV2 at
32 px): it sees the same raw images as the student, through its own pre-processing (input size and
normalisation), and the same augmentation draw. Its outputs for the training split (labelled and
`distill.unlabeled` rows) are computed once per view and cached (`data.augment` none or hflip: see
edgetl.train.teacher_cache); with random augmentations it runs online on the student's draw, at its own size.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from edgetl.data.transforms import hflip
from edgetl.errors import EdgetlError
from edgetl.evaluate.torch_eval import model_inputs
from edgetl.runtime.tasks import get_kind

FEATURES = "__features__"  # key of the teacher's pooled features among its outputs


class Teacher:
    def __init__(self, backbone, model, prep, device, source: str, identity: str | None = None):
        """`model`: the teacher's MultiTaskModel (task heads), or None for a backbone-spec teacher (features only).
        `identity`: what its outputs depend on besides the inputs (checkpoint digest), for the output cache."""
        self.backbone, self.model, self.prep, self.device, self.source = backbone, model, prep, device, source
        self.identity = identity or source
        self.cache_dir = None  # a run teacher's cache/ folder: its outputs, shared by its students
        for m in (backbone, model):
            if m is not None:
                m.eval()
                for p in m.parameters():
                    p.requires_grad_(False)
        self.feature_dim = int(backbone.feature_dim)

    @property
    def has_logits(self) -> bool:
        return self.model is not None

    @classmethod
    def from_spec(cls, recipe, splits, device, run=None) -> Teacher:
        """`run`: the teacher run `open_teacher_run` already opened and checked (None: open and check it here)."""
        from edgetl.recipe import BackboneSpec

        spec = recipe.distill.teacher
        if isinstance(spec, BackboneSpec):
            return cls._from_backbone(recipe, spec, device)
        return cls._from_run(recipe, spec, splits, device, run or open_teacher_run(recipe, spec))

    @classmethod
    def _from_run(cls, recipe, spec: str, splits, device, run) -> Teacher:
        from edgetl.models import build_model
        from edgetl.models.preprocess import make_preprocess
        from edgetl.runs.checkpoint import load_model

        t_recipe = run.recipe()
        t_labels = run.splits()["labels"]
        for task in recipe.tasks:
            if (
                splits is not None
                and get_kind(task.kind).has_labels
                and t_labels[task.name] != splits.labels[task.name]
            ):
                raise EdgetlError(
                    f"distill.teacher {spec}: task {task.name!r} has labels "
                    f"{_short(t_labels[task.name])}, the student {_short(splits.labels[task.name])}"
                )
        weights = "offline" if t_recipe.input.kind == "text" and t_recipe.backbone.weights == "offline" else "none"
        model = build_model(
            t_recipe.model_copy(update={"backbone": t_recipe.backbone.model_copy(update={"weights": weights})}),
            t_labels,
        )
        ck = run.checkpoint("best")
        load_model(model, ck)
        model.to(device)
        digest = hashlib.sha1(ck.read_bytes()).hexdigest()
        prep = make_preprocess(t_recipe, model.backbone)
        teacher = cls(model.backbone, model, prep, device, str(run.dir), identity=f"run {digest}")
        teacher.cache_dir = run.dir / "cache"
        return teacher

    @classmethod
    def _from_backbone(cls, recipe, spec, device) -> Teacher:
        from edgetl.models import create_backbone
        from edgetl.models.preprocess import make_preprocess

        if recipe.distill.feature == "none":
            raise EdgetlError(
                f"distill.teacher: backbone {spec.name!r} has no task heads, so only feature "
                "distillation applies; set distill.feature: mse or cosine, or use a trained run dir"
            )
        # The teacher's own normalisation: the recipe's mean/std belong to the student's backbone.
        t_recipe = recipe.model_copy(
            update={
                "backbone": spec,
                "input": recipe.input.model_copy(
                    update={"mean": None, "std": None} if recipe.input.kind == "image" else {}
                ),
            }
        )
        bb = create_backbone(spec).to(device)
        source = f"backbone {spec.name} ({spec.weights})"
        return cls(bb, None, make_preprocess(t_recipe, bb), device, source, identity=spec.model_dump_json())

    # ------------------------------------------------------------------------------------------ outputs
    @torch.no_grad()
    def outputs_rows(self, examples, idx, device, flip: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Task logits (run teachers) and pooled features (key FEATURES) for rows `idx`."""
        x = model_inputs(self.prep, examples, idx, self.device)
        if flip is not None and not isinstance(x, dict):
            x = hflip(x, flip=flip)
        return self.outputs_inputs(x, device)

    @torch.no_grad()
    def outputs_inputs(self, x, device) -> dict[str, torch.Tensor]:
        """Task logits and pooled features (key FEATURES) for inputs already through the teacher's `prep`."""
        feats = self.backbone(**x) if isinstance(x, dict) else self.backbone(x)
        out = dict(self.model.forward_heads(feats)) if self.model is not None else {}
        out[FEATURES] = feats
        return {k: v.to(device) for k, v in out.items()}

    # kept for callers of the earlier API
    def logits_rows(self, examples, idx, device) -> dict[str, torch.Tensor]:
        return self.outputs_rows(examples, idx, device)

    @torch.no_grad()
    def outputs_for(
        self, examples, progress=None, batch_size: int = 128, flip: bool = False
    ) -> dict[str, torch.Tensor]:
        """Teacher outputs for a whole split, computed once (frozen teacher); `flip`: of every image mirrored."""
        outs: dict[str, list] = {}
        label = "teacher outputs" + (" (mirrored)" if flip else "")
        task = progress.add_task(label, total=len(examples)) if progress else None
        for start in range(0, len(examples), batch_size):
            idx = np.arange(start, min(start + batch_size, len(examples)))
            f = torch.ones(len(idx), dtype=torch.bool) if flip else None
            for k, v in self.outputs_rows(examples, idx, "cpu", flip=f).items():
                outs.setdefault(k, []).append(v.float())
            if task is not None:
                progress.advance(task, len(idx))
        if task is not None:
            progress.remove_task(task)
        return {k: torch.cat(v) for k, v in outs.items()}

    logits_for = outputs_for


def open_teacher_run(recipe, spec: str):
    """The teacher run of `distill.teacher: <run dir>`, opened, its recipe read and checked against the student's
    once; the Teacher built later reuses this Run (and the recipe it holds)."""
    from edgetl.runs.layout import open_run

    try:
        run = open_run(spec)
    except EdgetlError as e:
        raise EdgetlError(f"distill.teacher: {e}") from None
    check_teacher_tasks(recipe, run.recipe(), spec)
    if not run.checkpoint("best").is_file():
        raise EdgetlError(f"distill.teacher {spec}: no checkpoint ({run.checkpoint('best')}); train the teacher first")
    return run


def check_teacher_tasks(recipe, t_recipe, spec: str) -> None:
    """Every student task must exist in the teacher with the same kind, and the inputs must be the same kind."""
    if t_recipe.input.kind != recipe.input.kind:
        raise EdgetlError(f"distill.teacher {spec}: takes {t_recipe.input.kind} input, the student {recipe.input.kind}")
    t_kinds = {t.name: t.kind for t in t_recipe.tasks}
    for task in recipe.tasks:
        if task.name not in t_kinds:
            raise EdgetlError(
                f"distill.teacher {spec}: has no task {task.name!r} "
                f"(teacher tasks: {', '.join(t_kinds)}; student tasks: "
                f"{', '.join(t.name for t in recipe.tasks)})"
            )
        if t_kinds[task.name] != task.kind:
            raise EdgetlError(
                f"distill.teacher {spec}: task {task.name!r} is {t_kinds[task.name]} in the teacher, "
                f"{task.kind} in the student"
            )


def _short(labels: list[str]) -> str:
    return "[" + ", ".join(labels[:4]) + (", ..." if len(labels) > 4 else "") + f"] ({len(labels)})"


def make_projection(student_dim: int, teacher_dim: int, seed: int) -> nn.Linear:
    """Student features -> teacher feature width (training only; never part of the exported model)."""
    g = torch.Generator().manual_seed(seed + 4242)
    proj = nn.Linear(student_dim, teacher_dim)
    with torch.no_grad():
        bound = 1.0 / student_dim**0.5
        proj.weight.uniform_(-bound, bound, generator=g)
        proj.bias.zero_()
    return proj
