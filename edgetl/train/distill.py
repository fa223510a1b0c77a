"""The frozen teacher of a distillation recipe: an earlier run whose tasks match the student's."""

from __future__ import annotations

import numpy as np
import torch

from edgetl.errors import EdgetlError
from edgetl.evaluate.torch_eval import call_model, model_inputs


class Teacher:
    def __init__(self, model, prep, device):
        self.model, self.prep, self.device = model.eval(), prep, device
        for p in self.model.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_spec(cls, recipe, splits, device) -> "Teacher":
        from edgetl.models import build_model
        from edgetl.train.checkpoint import load_model
        from edgetl.train.loop import make_preprocess
        from edgetl.train.run import open_run

        spec = recipe.distill.teacher
        if not isinstance(spec, str):
            raise EdgetlError("distill.teacher: a backbone spec needs trained heads; train it first and pass its run dir")
        run = open_run(spec)
        t_recipe = run.recipe()
        t_labels = run.splits()["labels"]
        t_kinds = {t.name: t.kind for t in t_recipe.tasks}
        for task in recipe.tasks:
            if task.name not in t_kinds:
                raise EdgetlError(f"distill.teacher {spec}: has no task {task.name!r} (teacher tasks: {', '.join(t_kinds)})")
            if t_kinds[task.name] != task.kind or t_labels[task.name] != splits.labels[task.name]:
                raise EdgetlError(f"distill.teacher {spec}: task {task.name!r} differs from the student's (kind or labels)")
        if t_recipe.input.kind != recipe.input.kind:
            raise EdgetlError(f"distill.teacher {spec}: takes {t_recipe.input.kind} input, the student {recipe.input.kind}")
        model = build_model(t_recipe.model_copy(update={"backbone": t_recipe.backbone.model_copy(update={"weights": "none"})}),
                            t_labels)
        load_model(model, run.checkpoint("best"))
        return cls(model.to(device), make_preprocess(t_recipe, model.backbone), device)

    @torch.no_grad()
    def logits_rows(self, examples, idx, device) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in call_model(self.model, model_inputs(self.prep, examples, idx, self.device)).items()}

    @torch.no_grad()
    def logits_for(self, examples, progress=None, batch_size: int = 128) -> dict[str, torch.Tensor]:
        """Teacher outputs for a whole split, computed once (the teacher is frozen and inputs are not augmented)."""
        outs: dict[str, list] = {}
        task = progress.add_task("teacher outputs", total=len(examples)) if progress else None
        for start in range(0, len(examples), batch_size):
            idx = np.arange(start, min(start + batch_size, len(examples)))
            for k, v in self.logits_rows(examples, idx, "cpu").items():
                outs.setdefault(k, []).append(v.float())
            if task is not None:
                progress.advance(task, len(idx))
        if task is not None:
            progress.remove_task(task)
        return {k: torch.cat(v) for k, v in outs.items()}
