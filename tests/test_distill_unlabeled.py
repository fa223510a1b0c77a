"""Distillation on unlabeled rows: where they come from (no val/test row leaks in), that they reach the KD loss
and only it, the teacher's per-view output cache, exact resume (stop and SIGKILL), and one-line refusals."""

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_recipe_dict
from helpers import edgetl_cli, one_error_line

from edgetl.errors import EdgetlError
from edgetl.recipe import AugmentStep, recipe_from_dict

SMALL = {
    "data.split": {"val_fraction": 0.15, "test_fraction": 0.15, "limit_train": 48, "limit_val": 32, "limit_test": 32},
    "train.batch_size": 16,
    "train.num_threads": 1,
}


def _recipe(**over):
    # a fresh copy: tiny_recipe_dict puts SMALL's split dict into the recipe itself, and overrides mutate it
    return recipe_from_dict(tiny_recipe_dict(**{**copy.deepcopy(SMALL), **over}))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    from edgetl.train.loop import train

    return train(
        _recipe(**{"name": "teacher", "input.image_size": 40}), runs_dir=tmp_path_factory.mktemp("t"), progress=False
    )


def _student(teacher_run, unlabeled="self", **over):
    return _recipe(**{"name": "student", "distill": {"teacher": str(teacher_run.dir), "unlabeled": unlabeled}, **over})


def test_recipe_shorthand_and_one_line_errors():
    rec = recipe_from_dict(tiny_recipe_dict(distill={"teacher": "runs/t", "unlabeled": "self"}))
    assert rec.distill.unlabeled.source == "self"
    with pytest.raises(EdgetlError, match="distill.teacher") as e:
        recipe_from_dict(tiny_recipe_dict(distill={"unlabeled": "self"}))
    assert "\n" not in str(e.value)
    with pytest.raises(EdgetlError, match="distill.unlabeled.path is required"):
        recipe_from_dict(tiny_recipe_dict(distill={"teacher": "runs/t", "unlabeled": {"source": "folder"}}))
    with pytest.raises(EdgetlError, match="unknown unlabeled source 'imagenet'"):
        recipe_from_dict(tiny_recipe_dict(distill={"teacher": "runs/t", "unlabeled": {"source": "imagenet"}}))


def test_builtin_unlabeled_rows_never_include_labelled_val_or_test_rows():
    """Same source: only rows outside train/val/test, by index and by content (digits has duplicate images)."""
    from edgetl.data import load_splits
    from edgetl.data.load import _content_hash
    from edgetl.data.unlabeled import UNLABELED

    rec = recipe_from_dict(
        tiny_recipe_dict(distill={"teacher": "runs/t", "unlabeled": {"source": "digits"}}, **{"train.seed": 3})
    )
    splits = load_splits(rec)
    u = splits.info["unlabeled"]
    used = np.array(u["indices"])
    parts = {k: np.array(v) for k, v in splits.info["indices"].items()}
    for k, rows in parts.items():
        assert not np.isin(used, rows).any(), f"an unlabeled row is a {k} row"
    from edgetl.data.builtin import load_digits

    raw = load_digits()
    held_out = {_content_hash(raw, i) for k in ("val", "test") for i in parts[k]}
    assert not {_content_hash(raw, i) for i in used} & held_out
    n_free = len(raw) - len(set(np.concatenate(list(parts.values())).tolist()))
    assert 0 < len(used) <= n_free and u["rows"] == len(used)
    # appended to train: every target missing, flagged as unlabeled, inputs are those rows' images
    tr = splits.train
    n_l = u["rows"]
    assert len(tr) == len(parts["train"]) + n_l
    assert (tr.targets["digit"][-n_l:] == -1).all() and (tr.targets["digit"][: len(parts["train"])] >= 0).all()
    assert (tr.dataset[-n_l:] == UNLABELED).all()
    np.testing.assert_array_equal(tr.images[-n_l:], raw.images[used])
    # the limit is a seeded sample of the same pool; the same recipe gives the same rows
    rec2 = rec.model_copy(
        update={
            "distill": rec.distill.model_copy(
                update={"unlabeled": rec.distill.unlabeled.model_copy(update={"limit": 5})}
            )
        }
    )
    a, b = load_splits(rec2).info["unlabeled"]["indices"], load_splits(rec2).info["unlabeled"]["indices"]
    assert a == b and len(a) == 5 and set(a) <= set(used.tolist())


def test_fashion_mnist_unlabeled_comes_from_its_training_rows_only():
    from edgetl.data import load_splits
    from edgetl.data.builtin import load_fashion_mnist

    try:
        raw = load_fashion_mnist()
    except EdgetlError as e:
        pytest.skip(str(e))
    d = tiny_recipe_dict(
        **{
            "tasks": [{"name": "category", "column": "label"}],
            "data": {"source": "fashion-mnist", "split": {"limit_train": 200, "limit_val": 100, "limit_test": 100}},
            "distill": {"teacher": "runs/t", "unlabeled": {"source": "fashion-mnist", "limit": 3000}},
        }
    )
    splits = load_splits(recipe_from_dict(d))
    used = np.array(splits.info["unlabeled"]["indices"])
    assert len(used) == 3000 and (raw.split[used] == "train").all()  # never an official test row
    labelled = np.concatenate([np.array(v) for v in splits.info["indices"].values()])
    assert not np.isin(used, labelled).any()  # nor a labelled train / val row


def test_folder_and_manifest_sources(tmp_path):
    from PIL import Image

    from edgetl.data import load_splits

    rng = np.random.default_rng(0)
    (tmp_path / "cam" / "day").mkdir(parents=True)
    for i in range(5):
        arr = rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)  # other sizes and RGB: an image_list
        Image.fromarray(arr).save(tmp_path / "cam" / ("day" if i % 2 else ".") / f"{i}.png")
    rec = _recipe(distill={"teacher": "runs/t", "unlabeled": {"source": "folder", "path": str(tmp_path / "cam")}})
    tr = load_splits(rec).train
    assert len(tr) == 48 + 5 and tr.files is not None  # the folder stays lazy: paths, decoded on demand
    assert tr.files.name(len(tr) - 1).endswith("cam/day/3.png")  # sorted last
    last = tr.inputs([len(tr) - 1])[0]
    assert last.shape == (rec.input.image_size, rec.input.image_size, 3) and last.dtype == np.uint8  # working size
    (tmp_path / "u.csv").write_text("path\n" + "".join(f"cam/{i}.png\n" for i in (0, 2, 4)))
    rec = _recipe(distill={"teacher": "runs/t", "unlabeled": {"source": "csv", "path": str(tmp_path / "u.csv")}})
    s = load_splits(rec)
    assert len(s.train) == 51 and s.info["unlabeled"]["rows"] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    rec = _recipe(distill={"teacher": "runs/t", "unlabeled": {"source": "folder", "path": str(empty)}})
    with pytest.raises(EdgetlError, match="no image files"):
        load_splits(rec)


def test_unlabeled_rows_train_and_reach_the_kd_loss_only(teacher_run, tmp_path):
    from edgetl.data import load_splits
    from edgetl.data.mixing import train_order
    from edgetl.runs.layout import Run
    from edgetl.train.distill import Teacher
    from edgetl.train.loop import Trainer, train
    from edgetl.train.losses import kd_loss
    from edgetl.train.teacher_cache import teacher_outputs

    rec = _student(teacher_run, {"source": "digits", "limit": 40})
    run = train(rec, runs_dir=tmp_path, progress=False)
    info = run.info()
    assert info["status"] == "completed"
    assert info["summary"]["data"]["rows"]["train"] == 48 and info["summary"]["data"]["unlabeled_rows"] == 40
    cache = list((run.dir / "cache").glob("teacher-*.safetensors"))
    assert len(cache) == 1

    splits = load_splits(rec)
    assert len(splits.train) == 88 and sorted(train_order(rec, splits.train, 0).tolist()) == list(range(88))
    r = Run(tmp_path / "probe")
    (r.dir / "checkpoints").mkdir(parents=True)
    tr = Trainer(rec, r, splits, progress=False)
    tr.teacher = Teacher.from_spec(rec, splits, "cpu")
    tr.set_freeze(0)
    tr.teacher_views = teacher_outputs(tr.teacher, splits.train, ("plain",), features=False, cache_dir=None)
    assert len(tr.teacher_views["plain"]["digit"]) == 88  # the teacher covers the unlabeled rows too
    idx = np.arange(48, 64)  # unlabeled rows only
    y = tr.forward_rows("train", idx)
    teacher = tr.teacher_batch(idx)
    total, parts = tr.batch_loss(y, splits.train, idx, teacher)
    kd = kd_loss("classification", y["digit"], teacher["digit"], rec.distill.temperature)
    assert float(kd.detach()) > 0 and float(total.detach()) == pytest.approx(float(kd.detach()), rel=1e-6)
    total.backward()
    grads = [p.grad.abs().sum() for p in tr.model.heads.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0  # the student learns from these rows
    no_teacher, _ = tr.batch_loss(tr.forward_rows("train", idx), splits.train, idx, None)
    assert float(no_teacher.detach()) == 0.0  # without the teacher these rows carry nothing


def test_hflip_views_cached_once_match_the_teacher_online(teacher_run):
    from edgetl.data import load_splits
    from edgetl.train.distill import Teacher
    from edgetl.train.teacher_cache import cached_views, pick, teacher_outputs

    rec = _student(teacher_run, "self", **{"data.augment": "hflip", "distill.feature": "cosine"})
    splits = load_splits(rec)
    t = Teacher.from_spec(rec, splits, "cpu")
    assert cached_views("hflip", "image") == ("plain", "hflip")
    assert cached_views([AugmentStep(name="random_resized_crop")], "image") is None
    assert cached_views([AugmentStep(name="hflip")], "image") == ("plain", "hflip")
    views = teacher_outputs(t, splits.train, ("plain", "hflip"), features=True, cache_dir=None)
    idx = np.array([3, 50, 7, 90, 0, 61])
    flip = torch.tensor([True, False, True, True, False, False])
    got = pick(views, idx, flip, "cpu")
    want = t.outputs_rows(splits.train, idx, "cpu", flip=flip)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-4)


def test_stopped_run_resumes_exactly_with_unlabeled_rows_and_hflip(teacher_run, tmp_path):
    from safetensors.numpy import load_file

    from edgetl.runs.layout import Run
    from edgetl.train.loop import train

    over = {"data.augment": "hflip", "train.epochs": 2, "train.checkpoint_every_steps": 1}
    ref = train(_student(teacher_run, "self", **over), name="ref", runs_dir=tmp_path, progress=False)
    stopped = train(
        _student(teacher_run, "self", **over), name="b", runs_dir=tmp_path, progress=False, stop_after_steps=8
    )
    for f in (stopped.dir / "cache").glob("teacher-*"):
        f.unlink()  # the teacher cache is rebuilt identically on resume
    resumed = train(None, resume=Run(stopped.dir), progress=False)
    num = [(r["train_loss"], r["val_loss"], r["score"]) for r in ref.metrics()]
    assert [(r["train_loss"], r["val_loss"], r["score"]) for r in resumed.metrics()] == num
    wa, wb = load_file(str(ref.checkpoint("last"))), load_file(str(resumed.checkpoint("last")))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_sigkilled_unlabeled_distillation_resumes_exactly(teacher_run, tmp_path):
    from test_resume_kill import METRIC_ATOL, WEIGHT_ATOL, run_campaign

    over = {"distill": {"teacher": str(teacher_run.dir), "unlabeled": {"source": "digits", "limit": 64}}}
    res = run_campaign(tmp_path, fsync_kills=(3,), timed_kills=2, overrides=over)
    assert [k for k in res.kills if k["killed"]], res.kills
    assert res.corrupt == [] and res.tracebacks == 0
    assert res.max_metric_diff <= METRIC_ATOL and res.max_weight_diff <= WEIGHT_ATOL
    summary = json.loads((res.run_dir / "run.json").read_text())["summary"]["data"]
    assert summary["unlabeled_rows"] == 64


def test_teacher_with_other_labels_is_one_line_naming_both(teacher_run, tmp_path):
    d = tiny_recipe_dict(
        **{
            **SMALL,
            "tasks": [{"name": "digit", "column": "label", "labels": [str(i) for i in range(9, -1, -1)]}],
            "distill": {"teacher": str(teacher_run.dir), "unlabeled": "self"},
        }
    )
    path = tmp_path / "student.yaml"
    path.write_text(yaml.safe_dump(d))
    runs = tmp_path / "runs"
    line = one_error_line(edgetl_cli("train", path, "--runs-dir", runs, "-q"))
    assert "task 'digit' has labels [0, 1, 2, 3, ...] (10), the student [9, 8, 7, 6, ...] (10)" in line
    assert not runs.exists() or not any(runs.iterdir())


def test_report_says_whether_distillation_paid_paired_by_seed(tmp_path):
    """Students with and without the teacher (same recipe otherwise), three seeds: mean paired gain and its SE."""
    from edgetl.reports.transfer import RunSummary, TaskScore, compare, render_markdown

    def run(name, seed, acc, distill=None):
        d = tiny_recipe_dict(**{"name": name, "train.seed": seed, **({"distill": distill} if distill else {})})
        (tmp_path / name).mkdir()
        (tmp_path / name / "recipe.yaml").write_text(yaml.safe_dump(d))
        return RunSummary(
            name=name,
            dir=str(tmp_path / name),
            role="distilled" if distill else "fine-tuned",
            variant="",
            backbone="mobilenet_v2",
            weights="offline",
            input="image 32px",
            tasks={"digit": "classification"},
            task_keys={"digit": "k"},
            epochs=1,
            train_seconds=1.0,
            teacher=distill["teacher"] if distill else None,
            scores={"digit": TaskScore("accuracy", acc, 2000, "r")},
        )

    kd = {"teacher": "/runs/big"}
    kdu = {"teacher": "/runs/big", "unlabeled": {"source": "digits", "limit": 500}}
    runs = [run(f"alone-{s}", s, a) for s, a in enumerate([0.80, 0.81, 0.79])]
    runs += [run(f"kd-{s}", s, a, kd) for s, a in enumerate([0.805, 0.80, 0.80])]
    runs += [run(f"kdu-{s}", s, a, kdu) for s, a in enumerate([0.84, 0.85, 0.83])]
    runs.append(run("other-student", 0, 0.5, None))  # another seed-0 baseline would be ambiguous: other size
    (tmp_path / "other-student" / "recipe.yaml").write_text(
        yaml.safe_dump(tiny_recipe_dict(**{"name": "other-student", "input.image_size": 48}))
    )
    rows = {d["setting"]: d for d in compare(runs)["distill_paid"]}
    assert len(rows) == 2
    u = next(d for s, d in rows.items() if "unlabeled" in s)
    assert u["baselines"] == ["alone-0", "alone-1", "alone-2"] and u["per_seed"] == pytest.approx([4.0, 4.0, 4.0])
    assert u["paid"] and u["verdict"].startswith("distillation paid: +4.0 ± 0.0 points over 3 seeds")
    assert "budgets not recorded" in u["warning"] and not u["compute_matched"]  # hand-made runs: no run.json
    k = next(d for s, d in rows.items() if "unlabeled" not in s)
    assert k["per_seed"] == pytest.approx([0.5, -1.0, 1.0]) and not k["paid"]
    assert k["verdict"].startswith("distillation did not pay: +0.2 ± 0.6 points over 3 seeds (within noise)")
    md = render_markdown(runs, compare(runs), "test")
    assert "## Did distillation pay?" in md and "distillation paid: +4.0" in md


def _budget_run(tmp_path, name, acc, steps, epochs, distill=None, **keys):
    """A finished run as `edgetl report` reads it: recipe.yaml, run.json with its budget, a test score."""
    from edgetl.reports.transfer import RunSummary, TaskScore

    d = tiny_recipe_dict(**{"name": name, "train.seed": 0, "train.epochs": epochs, **keys})
    if distill:
        d["distill"] = distill
    (tmp_path / name).mkdir()
    (tmp_path / name / "recipe.yaml").write_text(yaml.safe_dump(d))
    run_json = {"status": "completed", "optimizer_steps": steps, "examples_seen": steps * 32}
    (tmp_path / name / "run.json").write_text(json.dumps(run_json))
    return RunSummary(
        name=name,
        dir=str(tmp_path / name),
        role="distilled" if distill else "fine-tuned",
        variant="",
        backbone="mobilenet_v2",
        weights="offline",
        input="image 32px",
        tasks={"digit": "classification"},
        task_keys={"digit": "k"},
        epochs=epochs,
        train_seconds=1.0,
        teacher=distill["teacher"] if distill else None,
        scores={"digit": TaskScore("accuracy", acc, 750, "r")},
    )


def test_report_pairs_a_distilled_run_with_the_control_of_the_same_budget(tmp_path):
    """The issue's case: alone for N steps 81.7 %, distilled (teacher + unlabeled: 7N steps) 97.7 %, alone for
    7N steps 92.3 %. The verdict is the gain over the 7N control; with the N-step control only, it says both
    budgets and warns that the comparison is not compute-matched."""
    from edgetl.reports.distill import distill_verdicts, render

    kdu = {"teacher": "/runs/big", "unlabeled": {"source": "digits", "limit": 3000}}
    alone = _budget_run(tmp_path, "student-alone", 0.8173, 24, 3)
    dist = _budget_run(tmp_path, "student-kd", 0.9773, 165, 3, kdu)
    long = _budget_run(tmp_path, "student-alone-long", 0.9227, 168, 21)

    (v,) = distill_verdicts([alone, dist, long])
    assert v["baselines"] == ["student-alone-long"] and v["compute_matched"] and v["warning"] is None
    assert v["per_seed"] == pytest.approx([5.46])
    assert v["verdict"].startswith("distillation paid: +5.5 ± ")
    assert "compute-matched: distilled 165 steps, 5,280 examples, 3 epochs; control 168 steps" in v["verdict"]

    (w,) = distill_verdicts([alone, dist])
    assert w["baselines"] == ["student-alone"] and not w["compute_matched"] and w["per_seed"] == pytest.approx([16.0])
    assert "distilled 165 steps, 5,280 examples, 3 epochs; control 24 steps, 768 examples, 3 epochs" in w["verdict"]
    assert "not compute-matched: the distilled run took 6.9x the control's optimizer steps" in w["warning"]
    assert "train.epochs=21" in w["warning"] and w["warning"] in w["verdict"]
    assert "not compute-matched" in "\n".join(render([w]))


def test_report_names_the_keys_in_which_the_nearest_control_differs(tmp_path):
    from edgetl.reports.distill import distill_verdicts

    kdu = {"teacher": "/runs/big", "unlabeled": {"source": "digits", "limit": 3000}}
    dist = _budget_run(tmp_path, "student-kd", 0.9773, 165, 3, kdu)
    other = _budget_run(tmp_path, "student-lr", 0.92, 168, 21, **{"train.lr": 0.5})
    (r,) = distill_verdicts([dist, other])
    assert r["refused"] and r["paid"] is None
    lr = recipe_from_dict(tiny_recipe_dict()).train.lr
    assert r["verdict"] == (
        f"no control for student-kd: the nearest undistilled run, student-lr, differs in train.lr ({lr} vs 0.5)"
    )
    assert "train.epochs" not in r["verdict"]  # epochs are the budget, matched by steps: never a refusal


def test_split_seed_keeps_the_rows_across_training_seeds():
    """data.split.seed: a teacher and its students (every seed) train and are tested on the same rows."""
    from edgetl.data import load_splits

    a = load_splits(_recipe(**{"train.seed": 0, "data.split.seed": 5}))
    b = load_splits(_recipe(**{"train.seed": 3, "data.split.seed": 5}))
    c = load_splits(_recipe(**{"train.seed": 3}))
    assert a.info["indices"] == b.info["indices"] != c.info["indices"]
    assert "seed 5" in b.info["split_from"]


# ------------------------------------------------------------------ random augmentations: the teacher online
AUG = [{"random_resized_crop": {"scale": [0.2, 0.5]}}, "hflip", "mixup"]


def _aug_trainer(teacher_run, tmp_path, augment=AUG, own_teacher=False):
    from edgetl.data import load_splits
    from edgetl.runs.layout import Run
    from edgetl.train.distill import Teacher
    from edgetl.train.loop import Trainer

    rec = _recipe(**{"name": "s", "data.augment": augment, "distill": {"teacher": str(teacher_run.dir)}})
    splits = load_splits(rec)
    r = Run(tmp_path / "probe")
    (r.dir / "checkpoints").mkdir(parents=True)
    tr = Trainer(rec, r, splits, progress=False)
    tr.set_freeze(0)
    if own_teacher:  # the student as its own teacher: same input size and pre-processing
        teacher = Teacher(tr.model.backbone, tr.model, tr.prep, "cpu", "the student itself")
    else:
        teacher = Teacher.from_spec(rec, splits, "cpu")
    tr.set_teacher(teacher)
    return tr


def _student_input(tr, idx, flip, seed):
    """The student's model input for one augmented training step (spied on its forward)."""
    seen = []
    real = tr.train_forward

    def spy(*a, **k):
        seen.append(a[0])
        return real(*a, **k)

    tr.train_forward = spy
    aug = (seed, {})
    tr.forward_rows("train", idx, augment=True, flip=flip, aug=aug)
    tr.train_forward = real
    return seen[0], aug


def test_random_augmentation_teacher_sees_exactly_the_students_draw(teacher_run, tmp_path):
    """random_resized_crop + hflip + mixup: no per-view cache (draws cannot be enumerated); the teacher redraws
    the step's crop, flip and mixing from the step's seed. A teacher of the student's size gets the student's
    very input, and its outputs are those of that input."""
    from edgetl.evaluate.torch_eval import model_inputs
    from edgetl.train.teacher_cache import cached_views

    tr = _aug_trainer(teacher_run, tmp_path, own_teacher=True)
    assert cached_views(tr.recipe.data.augment, "image") is None and tr.teacher_augment is not None
    idx = np.array([3, 17, 5, 40, 0, 22])
    flip = torch.tensor([True, False, True, False, False, True])
    x, aug = _student_input(tr, idx, flip, seed=1234)
    torch.testing.assert_close(tr.teacher_view(*aug, flip), x, rtol=0, atol=0)
    plain = model_inputs(tr.prep, tr.splits.train, idx, "cpu")
    assert x.shape == plain.shape and (x - plain).abs().mean() > 0.1  # it was augmented
    got = tr.teacher_batch(idx, flip, aug)
    want = tr.teacher.outputs_inputs(x, "cpu")
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    x2, aug2 = _student_input(tr, idx, flip, seed=99)
    assert not torch.equal(tr.teacher_view(*aug2, flip), x) and torch.equal(tr.teacher_view(*aug2, flip), x2)


def test_random_augmentation_teacher_at_its_own_size_sees_the_same_crop(teacher_run, tmp_path):
    """A 40 px teacher for a 32 px student: the same crop, flip and mixing drawn at 40 px (brought to 32 px it is
    the student's input up to resampling, far closer than another step's draw)."""
    import torch.nn.functional as F

    tr = _aug_trainer(teacher_run, tmp_path)
    idx = np.arange(8)
    flip = torch.tensor([True, False] * 4)
    x, aug = _student_input(tr, idx, flip, seed=7)
    xt = tr.teacher_view(*aug, flip)
    assert tuple(xt.shape[-2:]) == (40, 40) and tuple(x.shape[-2:]) == (32, 32)
    _, other = _student_input(tr, idx, flip, seed=8)
    down = F.interpolate(xt, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    down_other = F.interpolate(tr.teacher_view(*other, flip), size=(32, 32), mode="bilinear", antialias=True)
    same, diff = (down - x).abs().mean(), (down_other - x).abs().mean()
    assert same < 0.35 * diff, (float(same), float(diff))


def test_cutmix_with_a_teacher_of_another_size_is_one_line(teacher_run, tmp_path):
    with pytest.raises(
        EdgetlError, match=r"^data.augment: cutmix with distill.teacher .* at 40 px and a student at 32 px"
    ):
        _aug_trainer(teacher_run, tmp_path, augment=["cutmix"])


def test_stopped_run_resumes_exactly_with_random_augmentation_and_a_teacher(teacher_run, tmp_path):
    from safetensors.numpy import load_file

    from edgetl.runs.layout import Run
    from edgetl.train.loop import train

    def rec():
        over = {"data.augment": AUG, "train.epochs": 2, "train.checkpoint_every_steps": 1}
        return _recipe(**{"name": "s", "distill": {"teacher": str(teacher_run.dir)}, **over})

    ref = train(rec(), name="ref", runs_dir=tmp_path, progress=False)
    assert not list((ref.dir / "cache").glob("teacher-*"))  # online: nothing to cache
    stopped = train(rec(), name="b", runs_dir=tmp_path, progress=False, stop_after_steps=5)
    resumed = train(None, resume=Run(stopped.dir), progress=False)
    num = [(r["train_loss"], r["val_loss"], r["score"]) for r in ref.metrics()]
    assert [(r["train_loss"], r["val_loss"], r["score"]) for r in resumed.metrics()] == num
    wa, wb = load_file(str(ref.checkpoint("last"))), load_file(str(resumed.checkpoint("last")))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_teacher_view_takes_the_host_path_when_its_resize_needs_it(teacher_run, tmp_path):
    """No crop step: the images stay at the student's size; a shorter_crop teacher at 40 px crops them per
    image on the host instead of refusing a batch that is not at its size."""
    tr = _aug_trainer(teacher_run, tmp_path, augment=["color_jitter"])
    tr.teacher.prep.resize = "shorter_crop"
    idx = np.arange(4)
    _, aug = _student_input(tr, idx, None, seed=3)
    assert tuple(tr.teacher_view(*aug).shape) == (4, 3, 40, 40)
