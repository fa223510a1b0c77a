"""A trained run loaded back for export, evaluation and bench: model, pre-processing, splits."""

from __future__ import annotations

from dataclasses import dataclass

from edgetl.data import DataSplits, load_splits
from edgetl.errors import EdgetlError
from edgetl.models import MultiTaskModel, build_model
from edgetl.recipe import Recipe
from edgetl.runs.checkpoint import load_model
from edgetl.runs.layout import Run, open_run, require_finished


@dataclass
class LoadedRun:
    run: Run
    recipe: Recipe
    model: MultiTaskModel
    prep: object
    splits: DataSplits

    @property
    def kinds(self) -> dict[str, str]:
        return {t.name: t.kind for t in self.recipe.tasks}


def load_run(path, which: str = "best", with_data: bool = True) -> LoadedRun:
    """Rebuild the run's model from its recipe (random init, no download) and load the checkpoint."""
    from edgetl.models.preprocess import make_preprocess

    run = path if isinstance(path, Run) else open_run(path)
    recipe = run.recipe()
    if not (run.dir / "splits.json").is_file() or not (
        run.checkpoint(which).is_file() or run.checkpoint("last").is_file()
    ):
        require_finished(run)  # a run that died early: say so and how to resume, not `missing file: ...`
    split_def = run.splits()
    labels = split_def.get("labels") if isinstance(split_def, dict) else None
    if not isinstance(labels, dict):
        raise EdgetlError(f"{run.dir / 'splits.json'}: no 'labels' (not written by edgetl train?)")
    unknown = [t.name for t in recipe.tasks if t.name not in labels]
    if unknown:
        raise EdgetlError(
            f"{run.recipe_path}: task {unknown[0]!r} was not trained in this run (its splits.json "
            f"has {', '.join(labels) or 'no tasks'}); was recipe.yaml edited after training?"
        )
    arch = recipe.model_copy(
        update={
            "backbone": recipe.backbone.model_copy(
                update={
                    "weights": "none"
                    if recipe.backbone.weights != "offline" or recipe.input.kind == "image"
                    else "offline"
                }
            )
        }
    )
    model = build_model(arch, labels)
    ck = run.checkpoint(which)
    if not ck.is_file():
        ck = run.checkpoint("last")
    load_model(model, ck)
    model.eval()
    prep = make_preprocess(recipe, model.backbone)
    splits = load_splits(recipe, split_def["indices"]) if with_data else None
    return LoadedRun(run, recipe, model, prep, splits)
