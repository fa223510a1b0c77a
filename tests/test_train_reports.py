"""What a run tells its user while and after it trains (issue 24): progress lines in a log file, the summary's
augmentation and resize, the resolved recipe, the test figure at the end."""

from __future__ import annotations

import sys

import yaml
from conftest import tiny_recipe_dict

from edgetl.recipe import recipe_from_dict
from edgetl.train.progress_lines import PlainProgress, wants_plain_lines

AUG = ["hflip", {"random_resized_crop": {"scale": [0.5, 1.0]}}]


class _Log:
    """A redirected stdout: not a terminal; notes for each line whether the epoch had ended (metrics.jsonl)."""

    def __init__(self, runs):
        self.runs, self.lines = runs, []

    def write(self, text):
        ended = any(self.runs.glob("*/metrics.jsonl"))
        self.lines += [(line, ended) for line in text.splitlines() if line]
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def test_a_run_written_to_a_log_file_prints_progress_before_the_epoch_ends(tmp_path, monkeypatch):
    from edgetl.runs.evaluate import evaluate_run
    from edgetl.train.loop import train

    runs = tmp_path / "runs"
    log = _Log(runs)
    monkeypatch.setattr(sys, "stdout", log)
    rec = recipe_from_dict(tiny_recipe_dict(**{"data.split.limit_train": 96, "train.epochs": 2, "data.augment": AUG}))
    run = train(rec, runs_dir=runs, progress=True, summary=False, progress_every_s=0.0)
    monkeypatch.undo()

    steps = [(line, ended) for line, ended in log.lines if line.startswith("epoch 1/2 step ")]
    assert [line.split()[3] for line, _ in steps] == ["1/3", "2/3", "3/3"]
    assert not any(ended for _, ended in steps)  # all of them before epoch 1 was over
    assert "ex/s loss " in steps[0][0] and " ETA " in steps[0][0]
    done = [line for line, _ in log.lines if " done in " in line]
    assert len(done) == 2 and done[0].startswith("epoch 1/2 done in ") and "val digit=" in done[0]

    info = run.info()  # item 3: what the images go through, in run.json's summary
    assert info["summary"]["augment"] == [
        {"name": "hflip"},
        {"name": "random_resized_crop", "scale": [0.5, 1.0], "ratio": [0.75, 4 / 3]},
    ]
    assert info["summary"]["preprocess"]["eval"] == {"resize": "bilinear", "size": 32}  # built-in digits: squash
    assert info["summary"]["preprocess"]["train"]["resize"] == "random_resized_crop"

    # item 5: the best checkpoint's test figure, the same one `edgetl eval` gives
    assert info["test"]["split"] == "test"
    ev = evaluate_run(run.dir, "pytorch", "test")
    assert info["test"]["headline"]["digit"] == ev["tasks"]["digit"]["accuracy"]
    assert set(info["best_val"]) == {"digit"}
    assert info["optimizer_steps"] == 6 and info["examples_seen"] == 2 * 96


def test_progress_lines_every_tenth_of_an_epoch_or_every_interval():
    class Out:
        def __init__(self):
            self.text = ""

        def write(self, t):
            self.text += t

        def flush(self):
            pass

    t = [0.0]
    out = Out()
    p = PlainProgress(3, 100, every_s=30.0, clock=lambda: t[0], out=out)
    p.start_epoch(0)
    for step in range(1, 101):
        t[0] += 0.5  # quick steps: a line every 10 steps
        p.step(step, 32, 1.0)
    lines = out.text.splitlines()
    assert [ln.split()[3] for ln in lines] == [f"{s}/100" for s in range(10, 101, 10)]
    assert "64.0 ex/s" in lines[0] and "ETA 0:00:45" in lines[0]

    out.text = ""
    p.start_epoch(1)
    for step in range(1, 6):
        t[0] += 31.0  # slow steps: a line after each, as 30 s have passed
        p.step(step, 32, 1.0)
    assert len(out.text.splitlines()) == 5


def test_plain_lines_only_when_not_a_terminal():
    class Tty:
        def isatty(self):
            return True

    assert not wants_plain_lines(Tty()) and wants_plain_lines(_Log(None))


def test_summary_shows_augmentation_and_the_resize_of_image_files():
    from edgetl.train.summary import preprocessing, summary_lines

    rec = recipe_from_dict(
        tiny_recipe_dict(**{"data": {"source": "csv", "path": "photos.csv"}, "input.image_size": 224})
    )
    p = preprocessing(rec)
    assert p["eval"] == {"resize": "shorter_crop", "size": 224, "crop_pct": 0.875, "shorter_side": 256}
    assert p["train"] == p["eval"]  # no random_resized_crop: the same resize
    s = {
        "data": {"source": "csv", "path": "photos.csv", "rows": {}, "split_from": "x", "skipped_unlabelled_rows": {}},
        "tasks": [],
        "backbone": {"name": "mobilenet_v2", "weights": "offline"},
        "device": "cpu",
        "precision": "fp32",
        "frozen_stages": {"policy": "none", "at_start": 0, "of": 5},
        "feature_cache": {"on": False, "setting": "auto"},
        "augment": [{"name": "hflip"}],
        "preprocess": p,
    }
    text = "\n".join(summary_lines(s))
    assert "augment: hflip" in text
    assert "resize: eval shorter side to 256 px, centre crop 224 px (shorter_crop, crop_pct 0.875)" in text


def test_saved_recipe_is_the_resolved_one():
    """`input.resize: auto`, `crop_pct: null` -> what ran (shorter_crop, 0.875), the user's values in a comment;
    the saved recipe loads back to the same pre-processing."""
    from edgetl.data.eval_resize import resize_of
    from edgetl.train.summary import resolved_recipe_yaml

    rec = recipe_from_dict(tiny_recipe_dict(**{"data": {"source": "csv", "path": "photos.csv"}}))
    text = resolved_recipe_yaml(rec, {})
    d = yaml.safe_load(text)
    assert d["input"]["resize"] == "shorter_crop" and d["input"]["crop_pct"] == 0.875
    assert "# input as written: resize auto, crop_pct None" in text
    assert resize_of(recipe_from_dict(d)) == resize_of(rec) == ("shorter_crop", 0.875)
    squash = yaml.safe_load(resolved_recipe_yaml(recipe_from_dict(tiny_recipe_dict()), {}))
    assert squash["input"]["resize"] == "squash" and squash["input"]["crop_pct"] is None  # digits: no crop


def test_last_line_gives_the_validation_and_test_scores(tmp_path):
    from edgetl.train.summary import final_line

    info = {"best_epoch": 2, "best_score": 0.91, "best_val": {"digit": 0.91}, "test": {"headline": {"digit": 0.9}}}
    assert (
        final_line(tmp_path, info)
        == f"run: {tmp_path}  best epoch 2  score 0.9100  val digit=0.9100  test digit=0.9000"
    )
