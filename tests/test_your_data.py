"""A user's own data: docs/your-data.md recipes (no drift), `--data` inspection, the start-of-run summary,
missing-label policy, one-line errors that name the key / file / argument, `edgetl runs` and the new-user path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_recipe_dict
from yourdata import image_folder, image_manifest, text_manifest

from edgetl.data import load_splits
from edgetl.data.inspect import starter_recipe
from edgetl.errors import EdgetlError
from edgetl.recipe import load_recipe, recipe_from_dict

DOCS = sorted((REPO / "docs").glob("*.md"))


def edgetl(*args, cwd=None, timeout=600):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "edgetl", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=timeout,
        env=env,
    )


def one_line_error(r) -> str:
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _merge(base: dict, frag: dict) -> dict:
    for k, v in frag.items():
        base[k] = _merge(dict(base.get(k) or {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


# ----------------------------------------------------------------------------------------------- docs = recipes
def test_every_yaml_block_in_the_docs_is_a_shipped_recipe_or_a_valid_fragment():
    blocks = [(p, b) for p in DOCS for b in re.findall(r"```yaml\n(.*?)```", p.read_text(), re.S)]
    named = 0
    for path, text in blocks:
        first = text.splitlines()[0].strip()
        data = yaml.safe_load(text)
        if first.startswith("# recipes/"):  # a whole recipe: must be, key for key, the file CI trains
            named += 1
            shipped = yaml.safe_load((REPO / first[2:]).read_text())
            assert data == shipped, f"{path.name}: the block for {first[2:]} differs from the file"
            recipe_from_dict(data, first[2:])
        else:  # a fragment: valid when merged into a recipe
            recipe_from_dict(_merge(tiny_recipe_dict(), data), path.name)
    assert named >= 3  # your-data.md shows imagefolder, csv-multitask and text-csv in full


def test_readme_first_screen_links_your_data():
    first = "\n".join((REPO / "README.md").read_text().splitlines()[:30])
    assert "docs/your-data.md" in first and "--data" in first


# ------------------------------------------------------------------------------------------------ --data inspection
def test_starter_recipe_for_folders_and_manifests(tmp_path):
    r = starter_recipe(image_folder(tmp_path / "split"))
    assert r["data"] == {"source": "imagefolder", "path": str(tmp_path / "split")}
    assert r["input"]["kind"] == "image" and r["tasks"] == [
        {"name": "label", "kind": "classification", "column": "label"}
    ]
    assert starter_recipe(image_folder(tmp_path / "flat", splits=False))["data"]["source"] == "imagefolder"
    m = starter_recipe(image_manifest(tmp_path / "m"))
    assert m["data"] == {
        "source": "csv",
        "path": str(tmp_path / "m" / "labels.csv"),
        "path_column": "path",
        "split_column": "split",
    }
    assert {t["name"]: t["kind"] for t in m["tasks"]} == {
        "colour": "classification",
        "shape": "classification",
        "size": "regression",
        "tags": "multilabel",
    }
    t = starter_recipe(text_manifest(tmp_path / "t", fmt="jsonl"), backbone="minilm")
    assert t["input"]["kind"] == "text" and t["data"]["text_column"] == "text" and t["data"]["source"] == "jsonl"
    assert [x["column"] for x in t["tasks"]] == ["sentiment", "stars"]
    for each in (r, m, t):
        recipe_from_dict(each)


def test_data_that_is_neither_images_nor_text_is_one_line(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(EdgetlError, match=r"--data .*n.csv: found neither a column of image paths"):
        starter_recipe(p)


# ------------------------------------------------------------------------------------------------ missing labels
def _text_recipe(path: Path, **over) -> dict:
    d = yaml.safe_load((REPO / "recipes" / "text-csv.yaml").read_text())
    d["data"]["path"] = str(path)
    d["data"].pop("missing_labels")
    return _merge(d, over)


def test_blank_label_single_task_is_an_error_naming_file_and_rows(tmp_path):
    csv = text_manifest(tmp_path, blank_rows=(1, 7))
    with pytest.raises(EdgetlError) as e:
        load_splits(recipe_from_dict(_text_recipe(csv)))
    msg = str(e.value)
    assert str(csv) in msg and "2 row(s) without a label in column 'sentiment' (row 3, 9)" in msg
    assert "data.missing_labels=skip" in msg and "\n" not in msg


def test_blank_label_skip_drops_and_counts_the_rows(tmp_path):
    csv = text_manifest(tmp_path, blank_rows=(1, 7))
    s = load_splits(recipe_from_dict(_text_recipe(csv, data={"missing_labels": "skip"})))
    assert sum(s.info["skipped_unlabelled_rows"].values()) == 2
    assert sum(s.info["sizes"].values()) == 48 - 2
    assert (s.train.targets["sentiment"] >= 0).all()


def test_multitask_masks_and_reports_missing_per_task(tmp_path):
    csv = image_manifest(tmp_path, blank_rows=(0, 6))  # rows 0 and 6 are train rows without a colour
    d = yaml.safe_load((REPO / "recipes" / "csv-multitask.yaml").read_text())
    d["data"]["path"] = str(csv)
    s = load_splits(recipe_from_dict(d))
    assert s.info["missing_labels"]["colour"] == {"train": 2, "val": 0, "test": 0}
    assert s.info["missing_labels"]["shape"] == {"train": 0, "val": 0, "test": 0}
    assert sum(s.info["sizes"].values()) == 36  # masked, not dropped


# ------------------------------------------------------------------------------------------------ one-line errors
def _write(tmp_path, d, name="my.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


def test_top_level_typo_names_the_unknown_key(tmp_path):
    d = tiny_recipe_dict()
    d["task"] = d.pop("tasks")
    line = one_line_error(edgetl("train", str(_write(tmp_path, d))))
    assert "my.yaml: task: unknown key; did you mean 'tasks'?" in line


def test_missing_input_kind_says_image_or_text(tmp_path):
    d = tiny_recipe_dict()
    del d["input"]["kind"]
    line = one_line_error(edgetl("train", str(_write(tmp_path, d))))
    assert "my.yaml: input.kind: `input.kind` is required: image or text" in line


def test_override_typo_is_reported_against_the_argument(tmp_path):
    line = one_line_error(edgetl("train", str(_write(tmp_path, tiny_recipe_dict())), "train.epoch=2"))
    assert "error: command-line argument 'train.epoch=2': train.epoch: unknown key; did you mean 'epochs'?" in line
    assert "my.yaml" not in line


def test_wrong_path_column_names_the_setting(tmp_path):
    csv = image_manifest(tmp_path)
    d = yaml.safe_load((REPO / "recipes" / "csv-multitask.yaml").read_text())
    d["data"].update(path=str(csv), path_column="file")
    line = one_line_error(edgetl("train", str(_write(tmp_path, d)), "--runs-dir", str(tmp_path / "runs")))
    assert "row 2 has no column 'file' (named by data.path_column)" in line
    assert "set data.path_column to one of them" in line


def test_export_of_an_unfinished_run_says_how_to_resume(tmp_path):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict()))
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    line = one_line_error(edgetl("export", str(run)))
    assert f"{run} has not finished training (status: running); resume it with `edgetl train --resume {run}`" in line


def test_predict_on_a_run_without_bundle_says_export_first(tmp_path):
    run = tmp_path / "x"
    run.mkdir()
    (run / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict()))
    line = one_line_error(edgetl("predict", str(run), "a.png"))
    assert f"{run} is a run without a deploy bundle yet; run `edgetl export {run} --int8` first" in line


# ------------------------------------------------------------------------------------------------ runs
def test_runs_lists_status_score_and_bundle(tmp_path):
    for name, info in {
        "ok": {"status": "completed", "best_score": 0.9},
        "bad": {"status": "failed", "error": "boom"},
    }.items():
        d = tmp_path / name
        d.mkdir()
        (d / "recipe.yaml").write_text("name: x\n")
        (d / "run.json").write_text(json.dumps(info))
    (tmp_path / "ok" / "export").mkdir()
    (tmp_path / "ok" / "export" / "manifest.json").write_text(json.dumps({"artifacts": {"fp32": {}}}))
    r = edgetl("runs", "--runs-dir", str(tmp_path), "--json")
    rows = {x["name"]: x for x in json.loads(r.stdout)}
    assert rows["ok"]["status"] == "completed" and rows["ok"]["best_score"] == 0.9
    assert rows["ok"]["bundle"] == str(tmp_path / "ok" / "export") and rows["ok"]["artifacts"] == ["fp32"]
    assert rows["bad"]["status"] == "failed" and rows["bad"]["bundle"] is None
    table = edgetl("runs", "--runs-dir", str(tmp_path)).stdout
    assert "failed" in table and "0.9000" in table


def test_exist_ok_reuses_the_name(tmp_path):
    from edgetl.runs.layout import new_run_dir

    first = new_run_dir("a", tmp_path)
    (first / "recipe.yaml").write_text("name: a\n")
    assert new_run_dir("a", tmp_path).name == "a-2"
    assert new_run_dir("a", tmp_path, exist_ok=True) == first and not (first / "recipe.yaml").exists()
    other = tmp_path / "b"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(EdgetlError, match="is not an edgetl run folder"):
        new_run_dir("b", tmp_path, exist_ok=True)


# ------------------------------------------------------------------------------------------------ training
def test_image_recipes_train_on_generated_data_with_summary_and_resolved_recipe(tmp_path):
    from edgetl.train.loop import train

    folder = image_folder(tmp_path / "photos")
    run = train(
        load_recipe(REPO / "recipes" / "imagefolder.yaml", [f"data.path={folder}", "train.epochs=1"]),
        runs_dir=tmp_path / "runs",
        progress=False,
    )
    s = run.info()["summary"]
    assert s["data"]["rows"] == {"train": 36, "val": 12, "test": 12}
    assert s["data"]["split_from"].startswith("sub-folders train/, val/, test/")
    assert s["tasks"][0]["classes"] == ["blue", "green", "red"] and s["tasks"][0]["train_counts"]["red"] == 12
    assert s["device"] == "cpu" and s["frozen_stages"]["at_start"] == 0 and s["feature_cache"]["on"] is False
    saved = yaml.safe_load(run.recipe_path.read_text())
    assert "val_fraction" not in saved["data"]["split"] and "test_fraction" not in saved["data"]["split"]
    assert run.recipe_path.read_text().startswith("# split: sub-folders")
    assert run.recipe().data.path == str(folder)  # the saved recipe reloads
    # resolved, not `auto`/null: what ran, as the summary says it (issue 24)
    assert (saved["input"]["resize"], saved["input"]["crop_pct"]) == ("shorter_crop", 0.875)
    assert s["preprocess"]["eval"] == {"resize": "shorter_crop", "size": 64, "crop_pct": 0.875, "shorter_side": 73}

    csv = image_manifest(tmp_path / "m")
    run = train(
        load_recipe(REPO / "recipes" / "csv-multitask.yaml", [f"data.path={csv}", "train.epochs=1"]),
        runs_dir=tmp_path / "runs",
        progress=False,
    )
    s = run.info()["summary"]
    assert [t["kind"] for t in s["tasks"]] == ["classification", "classification", "regression", "multilabel"]
    assert s["data"]["rows"] == {"train": 24, "val": 6, "test": 6}
    assert run.info()["status"] == "completed"


@pytest.mark.slow
def test_text_recipe_trains_and_reports_skipped_rows(tmp_path):
    from edgetl.train.loop import train

    csv = text_manifest(tmp_path, blank_rows=(2, 4))
    run = train(
        load_recipe(REPO / "recipes" / "text-csv.yaml", [f"data.path={csv}", "train.epochs=3"]),
        runs_dir=tmp_path / "runs",
        progress=False,
    )
    s = run.info()["summary"]
    assert sum(s["data"]["skipped_unlabelled_rows"].values()) == 2
    assert s["feature_cache"]["on"] is True and s["frozen_stages"]["policy"] == "linear_probe"
    assert run.info()["status"] == "completed"


@pytest.mark.slow
def test_new_user_path_folder_and_csv_train_export_bench_predict(tmp_path):
    """What a new user types: --data on a folder and on a CSV, and a shipped recipe pointed at the folder."""
    folder = image_folder(tmp_path / "photos")
    csv = image_manifest(tmp_path / "m")
    runs = tmp_path / "runs"
    cases = [
        ("--data", str(folder)),
        ("--data", str(csv)),
        (str(REPO / "recipes" / "imagefolder.yaml"), f"data.path={folder}"),
    ]
    for args in cases:
        r = edgetl("train", *args, "train.epochs=2", "--runs-dir", str(runs), "-q")
        assert r.returncode == 0, r.stderr
        run = Path(re.search(r"^run: (\S+)", r.stdout, re.M).group(1))
        assert re.search(r"train \d+, val \d+, test \d+ rows \(split: ", r.stderr), r.stderr
        if args[0] == "--data":
            assert "# recipe chosen for --data" in r.stderr
            assert yaml.safe_load((run / "recipe.yaml").read_text())["data"]["path"] == args[1]
        r = edgetl("export", str(run), "--int8", "-q")
        assert r.returncode == 0, r.stderr
        gate = json.loads((run / "export" / "manifest.json").read_text())["artifacts"]["int8-ort"]["quantization"][
            "gate"
        ]
        assert "threads" in gate["latency"]["how"] and gate["latency"]["cpu"]  # how and where the ratio was measured
        r = edgetl("bench", str(run), "--budget", "0.2", "--batch", "1")
        assert r.returncode == 0, r.stderr
        rep = json.loads((run / "bench.json").read_text())
        assert rep["timing"]["threads"] == gate["latency"]["threads"]  # timed like the gate
        assert rep["machine"] in r.stdout.replace("\n", " ") or rep["machine"][:20] in r.stdout
        assert (run / "bench.png").is_file()
        if args[1] == str(folder):
            r = edgetl("predict", str(run), str(folder / "test" / "red" / "0.png"), "--json")
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)[0]["label"]["label"] in ("red", "green", "blue")
    listing = {x["name"]: x for x in json.loads(edgetl("runs", "--runs-dir", str(runs), "--json").stdout)}
    assert len(listing) == 3 and all(x["status"] == "completed" and x["bundle"] for x in listing.values())


# ------------------------------------------------------------------------------------------------ bench naming + load
def _report(cpu: str) -> dict:
    return {
        "mode": "measured",
        "device": "cpu-x86-64",
        "device_display": "x86-64 CPU (calibrated on 2 vCPU AMD EPYC Zen 3, AVX2)",
        "n_eval": 10,
        "split": "test",
        "system": {"cpu": {"model": cpu}, "arch": "x86_64"},
        "tasks": {"label": "classification"},
        "bundle": "b",
        "created_utc": "now",
        "rows": [
            {"artifact": a, "precision": a, "latency_ms": {"p50_ms": ms}, "metrics": {"label": {"accuracy": 0.9}}}
            for a, ms in (("fp32", 2.0), ("int8-ort", 1.0))
        ],
    }


def test_bench_header_and_plot_title_name_the_cpu_that_ran_and_fit():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetl.bench.report import pareto_figure, render_markdown

    cpu = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    r = _report(cpu)
    head = render_markdown(r).splitlines()[0]
    assert head == f"# edgetl bench: {cpu} (MEASURED; profile cpu-x86-64)" and "calibrated on" not in head
    fig = pareto_figure(r, [("fp32", 2.0, 90.0), ("int8-ort", 1.0, 90.0)], plt)
    fig.canvas.draw()
    title = fig.axes[0].title
    box, frame = title.get_window_extent(), fig.bbox
    assert cpu.split(" CPU")[0] in title.get_text().replace("\n", " ")
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1, (box, frame)
    plt.close(fig)


def test_cpu_load_sees_another_busy_process():
    import time

    from edgetl.runtime.cpuload import CpuLoad

    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        time.sleep(0.3)
        with CpuLoad() as load:
            time.sleep(1.0)
    finally:
        busy.kill()
        busy.wait()
    assert load.other_share is not None and load.other_share >= 0.9 / (os.cpu_count() or 1) * 0.5
    assert load.busy if (os.cpu_count() or 1) <= 4 else True


def test_train_needs_a_recipe_or_data_not_both(tmp_path):
    line = one_line_error(edgetl("train"))
    assert "give a recipe file (e.g. recipes/quickstart.yaml) or --data PATH" in line
    line = one_line_error(edgetl("train", "recipes/imagefolder.yaml", "--data", str(tmp_path)))
    assert "give a recipe file or --data, not both" in line


def test_image_folder_task_column_other_than_label_says_what_it_is(tmp_path):
    d = yaml.safe_load((REPO / "recipes" / "imagefolder.yaml").read_text())
    d["data"]["path"] = str(image_folder(tmp_path, per_class=3))
    d["tasks"][0]["column"] = "class"
    with pytest.raises(
        EdgetlError,
        match=r"has no label column 'class' \(available: label\); an image folder's one "
        r"label column is 'label'",
    ):
        load_splits(recipe_from_dict(d))
