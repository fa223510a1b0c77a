"""What `edgetl train` trains: a recipe file, `--data PATH` (a starter recipe), or a run to resume.

Kept out of the CLI so the shell and Python resolve the same way, with the same one-line errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.recipe import Recipe, load_recipe
from edgetl.runs.layout import Run, latest_run, open_run


@dataclass
class TrainTarget:
    recipe: Recipe
    resume: Run | None = None
    starter_yaml: str | None = None  # the recipe `--data` chose, to show the user


def resolve_train_target(
    recipe: str | None,
    overrides: list[str],
    *,
    data: Path | None = None,
    backbone: str | None = None,
    name: str | None = None,
    runs_dir: Path = Path("runs"),
    resume: str | None = None,
) -> TrainTarget:
    """A recipe file (+ overrides), or `--data` (+ overrides), or `--resume DIR|last`, into one TrainTarget.

    `edgetl train --data DIR key=value` puts the first override where the recipe goes; it is moved back here.
    """
    overrides = list(overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        overrides.insert(0, recipe)
        recipe = None
    if resume and resume != "last":
        if overrides or data:
            raise EdgetlError("--resume continues a run with its own recipe; overrides and --data are not allowed")
        run = open_run(resume)
        return TrainTarget(run.recipe(), run)
    starter = None
    if data is not None:
        from edgetl.data.inspect import load_starter

        if recipe is not None:
            raise EdgetlError(
                f"give a recipe file or --data, not both (point {recipe} at your data with data.path=...)"
            )
        rec, starter = load_starter(data, backbone, overrides)
    elif recipe is None:
        raise EdgetlError("give a recipe file (e.g. recipes/quickstart.yaml) or --data PATH (see docs/your-data.md)")
    else:
        rec = load_recipe(recipe, ([f"backbone.name={backbone}"] if backbone else []) + overrides)
    if resume == "last":
        run = latest_run(name or rec.name, runs_dir)
        if run is None:
            raise EdgetlError(f"--resume last: no earlier run of {name or rec.name!r} in {runs_dir}")
        if overrides:
            raise EdgetlError("--resume continues a run with its own recipe; overrides are not allowed")
        return TrainTarget(run.recipe(), run)
    return TrainTarget(rec, None, starter)


def train_command(
    recipe: str | None = None,
    overrides: list[str] | None = None,
    *,
    data: Path | None = None,
    backbone: str | None = None,
    name: str | None = None,
    runs_dir: Path = Path("runs"),
    exist_ok: bool = False,
    resume: str | None = None,
    logger: str = "auto",
    quiet: bool = False,
    say: Callable[[str], None] = print,
) -> Run:
    """`edgetl train` under its flags' names: what to train is resolved before torch is imported (bad input
    fails fast), the recipe `--data` chose is shown through `say`, then the run trains and is returned."""
    if logger not in ("tensorboard", "none", "auto"):
        raise EdgetlError(f"--logger {logger!r}: allowed tensorboard, none, auto")
    target = resolve_train_target(
        recipe, overrides or [], data=data, backbone=backbone, name=name, runs_dir=runs_dir, resume=resume
    )
    from edgetl.train.loop import train

    if target.starter_yaml:
        say(
            f"# recipe chosen for --data {data} (change any key with key=value; saved as <run>/recipe.yaml)\n"
            + target.starter_yaml.rstrip()
        )
    return train(
        target.recipe,
        name=name,
        runs_dir=runs_dir,
        resume=target.resume,
        progress=not quiet,
        logger=logger,
        exist_ok=exist_ok,
        summary=True,
    )
