"""The start-of-run summary: what a run is about to train on, said before the first epoch (screen + run.json).

A new user's first question is "did it read my data the way I meant?": rows per split and where the split came
from, each task's classes and counts, missing labels, and how the model will train (device, precision, frozen
stages, feature cache), and what the images go through (the augmentation list, the train and eval resize).
The same dict goes into run.json under `summary`; the saved recipe.yaml is the resolved one (`input.resize:
auto` and `crop_pct: null` replaced by what ran, split settings the data did not use dropped), with the
user's own values beside it in comments.
"""

from __future__ import annotations

import yaml

from edgetl.data.augment import steps_of
from edgetl.data.eval_resize import resize_of
from edgetl.data.examples import DataSplits
from edgetl.recipe import AUGMENT_PARAMS, Recipe
from edgetl.runtime.tasks import get_kind


def augment_list(recipe: Recipe) -> list[dict]:
    """`data.augment` as [{"name", <its own settings>}]: what each training image goes through, in order."""
    return [
        {"name": st.name, **{k: getattr(st, k) for k in AUGMENT_PARAMS[st.name]}}
        for st in steps_of(recipe.data.augment)
    ]


def preprocessing(recipe: Recipe) -> dict:
    """How an input reaches the model: for images the eval resize (policy, crop fraction, size, the shorter
    side it implies) and the train one (random_resized_crop when the augment list has it, else the eval one)."""
    inp = recipe.input
    if inp.kind != "image":
        return {"kind": inp.kind, "max_length": inp.max_length}
    resize, pct = resize_of(recipe)
    size = int(inp.image_size)
    ev = {"resize": resize, "size": size}
    if resize == "shorter_crop":
        ev.update(crop_pct=pct, shorter_side=max(size, int(size / pct)))
    rrc = next((st for st in steps_of(recipe.data.augment) if st.name == "random_resized_crop"), None)
    if rrc is not None:
        tr = {"resize": "random_resized_crop", "size": size, "scale": list(rrc.scale), "ratio": list(rrc.ratio)}
    else:
        tr = dict(ev)
    return {"kind": "image", "eval": ev, "train": tr}


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
        if info.get("clipped_boxes", {}).get(t.name):
            entry["clipped"] = info["clipped_boxes"][t.name]
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
        "augment": augment_list(recipe),
        "preprocess": preprocessing(recipe),
    }


def _resize_text(r: dict) -> str:
    if r["resize"] == "shorter_crop":
        return f"shorter side to {r['shorter_side']} px, centre crop {r['size']} px (shorter_crop, crop_pct {r['crop_pct']})"
    if r["resize"] == "random_resized_crop":
        return f"random_resized_crop to {r['size']} px (scale {r['scale'][0]}-{r['scale'][1]})"
    return f"squashed to {r['size']}x{r['size']} px (bilinear)"


def _augment_text(steps: list[dict]) -> str:
    def one(st):
        params = ", ".join(f"{k}={v}" for k, v in st.items() if k != "name")
        return f"{st['name']}({params})" if params else st["name"]

    return ", ".join(one(st) for st in steps) or "none"


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
    p = s.get("preprocess") or {}
    if p.get("kind") == "image":
        lines.append(f"augment: {_augment_text(s.get('augment', []))}")
        lines.append(f"resize: eval {_resize_text(p['eval'])}; train {_resize_text(p['train'])}")
    elif p:
        lines.append(f"augment: {_augment_text(s.get('augment', []))}; text truncated to {p['max_length']} tokens")
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
    """The recipe as the run used it: `input.resize: auto` and `input.crop_pct: null` replaced by the resize
    that ran (the user's values in a comment), `data.split` fractions the data's own split made moot left out,
    and a comment that says where the split came from (a reader must not think val_fraction chose the rows)."""
    d = recipe.model_dump(mode="json")
    notes = []
    if recipe.input.kind == "image":
        resize, pct = resize_of(recipe)
        ran = "squash" if resize == "bilinear" else resize  # the recipe's name for the runtime's "bilinear"
        used = pct if ran == "shorter_crop" else recipe.input.crop_pct  # a squash crops nothing
        if (recipe.input.resize, recipe.input.crop_pct) != (ran, used):
            notes.append(f"# input as written: resize {recipe.input.resize}, crop_pct {recipe.input.crop_pct}")
        d["input"]["resize"], d["input"]["crop_pct"] = ran, used
    if not recipe.extra_data and "split_fractions_used" in split_info:
        used = set(split_info["split_fractions_used"])
        for key in ("val_fraction", "test_fraction"):
            if key not in used:
                d["data"]["split"].pop(key, None)
    head = f"# split: {split_info.get('split_from')}\n" if split_info.get("split_from") else ""
    return head + "".join(n + "\n" for n in notes) + yaml.safe_dump(d, sort_keys=False)


def final_line(run_dir, info: dict) -> str:
    """The last line of `edgetl train`: the best epoch, its validation score and the test figure of that
    checkpoint (when the data has a test split), per task."""

    def per_task(d: dict | None) -> str:
        return " ".join(f"{t}={v:.4f}" if v is not None else f"{t}=-" for t, v in (d or {}).items())

    line = f"run: {run_dir}  best epoch {info.get('best_epoch')}  score {info.get('best_score', float('nan')):.4f}"
    if info.get("best_val"):
        line += f"  val {per_task(info['best_val'])}"
    test = info.get("test")
    if test:
        line += f"  test {per_task(test['headline'])}"
    return line
