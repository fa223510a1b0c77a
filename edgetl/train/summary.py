"""The start-of-run summary: what a run is about to train on, said before the first epoch (screen + run.json).

A new user's first question is "did it read my data the way I meant?": rows per split and where the split came
from, each task's classes and counts, missing labels, and how the model will train (device, precision, frozen
stages, feature cache). The same dict goes into run.json under `summary`, and the resolved recipe.yaml drops
split settings the data did not use.
"""

from __future__ import annotations

import yaml

from edgetl.data.examples import DataSplits
from edgetl.recipe import Recipe
from edgetl.runtime.tasks import get_kind


def run_summary(
    recipe: Recipe,
    splits: DataSplits,
    *,
    device: str,
    precision: str,
    frozen_stages: int,
    num_stages: int,
    feature_cache: bool,
) -> dict:
    """A JSON-able dict: data (rows per split, split origin, skipped rows), tasks, and the training setup."""
    info = splits.info
    tasks = []
    for t in recipe.tasks:
        train_t = splits.train.targets[t.name]
        entry = {
            "name": t.name,
            "kind": t.kind,
            "column": t.label_column,
            "missing_labels": info.get("missing_labels", {}).get(t.name, {}),
        }
        entry.update(get_kind(t.kind).train_description(train_t, splits.labels[t.name]))
        tasks.append(entry)
    freeze = recipe.train.freeze
    return {
        "data": {
            "source": recipe.data.source,
            "path": recipe.data.path,
            "rows": {k: int(v) for k, v in info.get("sizes", {}).items()},
            "split_from": info.get("split_from"),
            "skipped_unlabelled_rows": info.get("skipped_unlabelled_rows", {}),
            "missing_labels_policy": recipe.data.missing_labels,
            # distill.unlabeled: extra train rows without labels (teacher soft targets only), beside `rows`
            "unlabeled_rows": int(info.get("unlabeled", {}).get("rows", 0)),
            "unlabeled_from": info.get("unlabeled", {}).get("from"),
        },
        "tasks": tasks,
        "backbone": {"name": recipe.backbone.name, "weights": recipe.backbone.weights},
        "device": device,
        "precision": precision,
        "frozen_stages": {"policy": freeze.policy, "at_start": int(frozen_stages), "of": int(num_stages)},
        "feature_cache": {"on": bool(feature_cache), "setting": recipe.train.feature_cache},
    }


def summary_lines(s: dict) -> list[str]:
    """The summary for people, a few short lines (plain text: paths and class names may hold brackets)."""
    d = s["data"]
    rows = d["rows"]
    skipped = sum(d["skipped_unlabelled_rows"].values()) if d["skipped_unlabelled_rows"] else 0
    lines = [
        f"data {d['source']}{' ' + d['path'] if d['path'] else ''}: "
        f"train {rows.get('train', 0)}, val {rows.get('val', 0)}, test {rows.get('test', 0)} rows "
        f"(split: {d['split_from']})"
        + (f"; {skipped} unlabelled rows skipped (data.missing_labels=skip)" if skipped else "")
    ]
    if d.get("unlabeled_rows"):
        lines.append(
            f"distillation: {rows.get('train', 0)} labelled + {d['unlabeled_rows']} unlabeled train rows "
            f"(teacher soft targets only; {d['unlabeled_from']})"
        )
    for t in s["tasks"]:
        miss = sum(t["missing_labels"].values()) if t["missing_labels"] else 0
        miss_s = (
            f"; missing labels {miss} ({', '.join(f'{k} {v}' for k, v in t['missing_labels'].items())})" if miss else ""
        )
        what = get_kind(t["kind"]).summary_text(t)
        lines.append(f"task {t['name']} ({t['kind']}, column {t['column']!r}): {what}{miss_s}")
    f = s["frozen_stages"]
    lines.append(
        f"train {s['backbone']['name']} ({s['backbone']['weights']} weights) on {s['device']}, "
        f"{s['precision']}; frozen stages {f['at_start']}/{f['of']} ({f['policy']}); feature cache "
        f"{'on' if s['feature_cache']['on'] else 'off'} ({s['feature_cache']['setting']})"
    )
    return lines


def print_summary(s: dict, console=None) -> None:
    from rich.console import Console

    console = console or Console(stderr=True, soft_wrap=True)  # one line per item, even in a log file
    for line in summary_lines(s):
        console.print(line, markup=False, highlight=False)


def resolved_recipe_yaml(recipe: Recipe, split_info: dict) -> str:
    """The recipe as the run used it: `data.split` fractions the data's own split made moot are left out, and
    a comment says where the split came from (a reader must not think val_fraction chose the rows)."""
    d = recipe.model_dump(mode="json")
    if not recipe.extra_data and "split_fractions_used" in split_info:
        used = set(split_info["split_fractions_used"])
        for key in ("val_fraction", "test_fraction"):
            if key not in used:
                d["data"]["split"].pop(key, None)
    head = f"# split: {split_info.get('split_from')}\n" if split_info.get("split_from") else ""
    return head + yaml.safe_dump(d, sort_keys=False)
