"""Checks a recipe must pass before a run directory is created: each failure is one line naming the field.

Cheap (no data loading, no weights): backbone vs input kind, checkpoint-selection metric, distillation
teacher, dataset mixing. Checks that need the built model (freeze depth vs the backbone's stages) run in
`check_model`, right after the model is built.
"""

from __future__ import annotations

from edgetl.errors import EdgetlError
from edgetl.recipe import DATA_SOURCES
from edgetl.runtime.tasks import get_kind


def check_recipe(recipe):
    """Raises on the first problem; returns the distillation teacher's Run when it is a run dir (opened and
    checked here, for `Teacher.from_spec(..., run=)`), else None."""
    from edgetl.data.load import tasks_by_dataset
    from edgetl.data.mixing import ratios_of
    from edgetl.models.registry import get_backbone_entry

    entry = get_backbone_entry(recipe.backbone.name)
    if entry.kind != recipe.input.kind:
        raise EdgetlError(
            f"backbone.name: {recipe.backbone.name!r} takes {entry.kind} input but input.kind is "
            f"{recipe.input.kind!r} (data.source {recipe.data.source!r})"
        )
    for name, spec in recipe.extra_data.items():
        held = DATA_SOURCES[spec.source].input_kind
        if held is not None and held != recipe.input.kind:
            raise EdgetlError(
                f"extra_data.{name}.source {spec.source!r} does not hold {recipe.input.kind} examples "
                "(every dataset of a recipe has the recipe's input kind)"
            )
    if recipe.extra_data:
        tasks_by_dataset(recipe)
    ratios_of(recipe)
    check_select_metric(recipe)
    return check_distill(recipe) if recipe.distill is not None else None


def check_select_metric(recipe) -> None:
    sel = recipe.train.select_metric
    kinds = {t.name: t.kind for t in recipe.tasks}
    if sel in ("mean_accuracy", "loss"):
        return
    task, sep, key = sel.partition("/")
    if not sep or task not in kinds:
        options = ["mean_accuracy", "loss"] + [
            f"{t}/{m}" for t, k in kinds.items() for m in get_kind(k).metrics_selectable
        ]
        raise EdgetlError(f"train.select_metric: {sel!r} is not one of: {', '.join(options)}")
    if key not in get_kind(kinds[task]).metrics_selectable:
        raise EdgetlError(
            f"train.select_metric: task {task!r} is {kinds[task]}; its metrics are "
            f"{', '.join(get_kind(kinds[task]).metrics_selectable)} (got {key!r})"
        )


def check_distill(recipe):
    from edgetl.models.registry import get_backbone_entry
    from edgetl.recipe import BackboneSpec
    from edgetl.tasks import get_task_kind
    from edgetl.train.distill import open_teacher_run

    for t in recipe.tasks:  # each kind says whether (and why not) it can learn from a teacher
        why = get_task_kind(t.kind).distill_refusal
        if why:
            raise EdgetlError(f"distill.teacher: task {t.name!r} is {t.kind}, which cannot be distilled: {why}")
    spec = recipe.distill.teacher
    if isinstance(spec, BackboneSpec):
        entry = get_backbone_entry(spec.name)
        if entry.kind != recipe.input.kind:
            raise EdgetlError(
                f"distill.teacher: backbone {spec.name!r} takes {entry.kind} input, the student {recipe.input.kind}"
            )
        if recipe.distill.feature == "none":
            raise EdgetlError(
                f"distill.teacher: backbone {spec.name!r} has no task heads, so only feature "
                "distillation applies; set distill.feature: mse or cosine, or use a trained run dir"
            )
        return None
    return open_teacher_run(recipe, spec)


def check_model(recipe, model) -> None:
    """Freeze depth vs the backbone actually built."""
    f = recipe.train.freeze
    n = model.backbone.num_stages
    if f.policy in ("first_k", "gradual") and f.stages > n:
        names = ", ".join(model.backbone.stage_names)
        raise EdgetlError(
            f"train.freeze.stages={f.stages} but backbone {recipe.backbone.name!r} has only {n} stages ({names})"
        )
    if f.policy == "first_k" and f.stages == 0:
        raise EdgetlError("train.freeze.stages=0 with policy first_k freezes nothing; use policy none, or stages >= 1")
