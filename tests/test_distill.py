"""Distillation: KD loss maths, teacher checks (one-line errors), the loss mix in the loop, feature
distillation through a training-only projection (saved for resume, never in the model), backbone teachers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import tiny_recipe_dict
from helpers import edgetl_cli, one_error_line

from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict
from edgetl.train.losses import feature_loss, kd_loss

SMALL = {
    "data.split": {"val_fraction": 0.15, "test_fraction": 0.15, "limit_train": 48, "limit_val": 32, "limit_test": 32},
    "train.batch_size": 16,
}


def _recipe(**over):
    return recipe_from_dict(tiny_recipe_dict(**{**SMALL, **over}))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    from edgetl.train.loop import train

    return train(
        _recipe(**{"name": "teacher", "train.epochs": 1}), runs_dir=tmp_path_factory.mktemp("teacher"), progress=False
    )


def test_kd_loss_is_hinton_kl_times_t_squared():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert float(kd_loss("classification", t, t, 4.0)) == pytest.approx(0.0, abs=1e-6)
    T = 3.0
    p_t = F.softmax(t / T, 1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / T, 1))).sum(1).mean() * T * T
    assert float(kd_loss("classification", s, t, T)) == pytest.approx(float(manual), rel=1e-5)
    assert float(kd_loss("regression", s[:, 0], t[:, 0], T)) == pytest.approx(float(F.mse_loss(s[:, 0], t[:, 0])))
    assert float(feature_loss("cosine", s, 2 * s)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert float(feature_loss("mse", s, 2 * s)) == pytest.approx(float((s**2).mean()), rel=1e-5)


def test_teacher_with_other_tasks_is_one_line_error(teacher_run, tmp_path):
    d = tiny_recipe_dict(
        **{**SMALL, "tasks": [{"name": "parity", "column": "parity"}], "distill": {"teacher": str(teacher_run.dir)}}
    )
    path = tmp_path / "student.yaml"
    path.write_text(yaml.safe_dump(d))
    runs = tmp_path / "runs"
    line = one_error_line(edgetl_cli("train", path, "--runs-dir", runs, "-q"))
    assert "has no task 'parity'" in line and "teacher tasks: digit" in line, line
    assert not runs.exists() or not any(runs.iterdir()), "a run dir was created for a recipe that cannot train"


def test_teacher_checks(teacher_run):
    from edgetl.data import load_splits
    from edgetl.train.checks import check_recipe
    from edgetl.train.distill import Teacher

    with pytest.raises(EdgetlError, match="run directory not found"):
        check_recipe(_recipe(**{"distill": {"teacher": str(teacher_run.dir) + "-missing"}}))
    with pytest.raises(EdgetlError, match="is classification in the teacher, regression in the student"):
        check_recipe(
            _recipe(
                **{
                    "tasks": [{"name": "digit", "kind": "regression", "column": "label"}],
                    "distill": {"teacher": str(teacher_run.dir)},
                }
            )
        )
    # same task name, labels in another order: the teacher's logits would mean other classes
    rec = _recipe(
        **{
            "tasks": [{"name": "digit", "column": "label", "labels": [str(i) for i in range(9, -1, -1)]}],
            "distill": {"teacher": str(teacher_run.dir)},
        }
    )
    with pytest.raises(EdgetlError, match="task 'digit' has labels"):
        Teacher.from_spec(rec, load_splits(rec), "cpu")
    # a backbone teacher has no heads: feature distillation only
    with pytest.raises(EdgetlError, match="set distill.feature"):
        check_recipe(_recipe(**{"distill": {"teacher": {"name": "mobilenet_v2", "weights": "offline"}}}))
    with pytest.raises(EdgetlError, match="takes text input"):
        check_recipe(_recipe(**{"distill": {"teacher": {"name": "minilm"}, "feature": "mse"}}))


def test_distilled_student_loss_mix_projection_and_resume(teacher_run, tmp_path):
    from safetensors.torch import load_file

    from edgetl.data import load_splits
    from edgetl.runs.layout import Run
    from edgetl.train.distill import FEATURES, Teacher
    from edgetl.train.loop import Trainer, train

    over = {
        "name": "student",
        "input.image_size": 24,
        "train.epochs": 2,
        "distill": {
            "teacher": str(teacher_run.dir),
            "alpha": 0.7,
            "temperature": 2.0,
            "feature": "cosine",
            "feature_weight": 0.5,
        },
    }
    run = train(_recipe(**over), runs_dir=tmp_path, progress=False, stop_after_steps=4)  # stops in epoch 2
    assert run.info()["status"] == "stopped"
    proj = load_file(run.checkpoints / "last.distill.safetensors")
    assert set(proj) == {"weight", "bias"} and tuple(proj["weight"].shape) == (1280, 1280)
    run = train(None, resume=run, progress=False)
    assert run.info()["status"] == "completed"
    model_keys = set(load_file(run.checkpoint("best")))
    assert not any("proj" in k for k in model_keys) and all(k.startswith(("backbone.", "heads.")) for k in model_keys)

    # the loss is (1 - alpha) * CE + alpha * KD per task, plus feature_weight * feature term
    rec = _recipe(**over)
    splits = load_splits(rec)
    r = Run(tmp_path / "probe")
    (r.dir / "checkpoints").mkdir(parents=True)
    tr = Trainer(rec, r, splits, progress=False)
    tr.teacher = Teacher.from_spec(rec, splits, "cpu")
    tr.set_freeze(0)
    assert tr.optimizer.param_groups[-1]["name"] == "distill.projection"
    idx = np.arange(8)
    y, feats = tr.forward_rows("train", idx, with_features=True)
    teacher = tr.teacher.outputs_rows(splits.train, idx, "cpu")
    total, parts = tr.batch_loss(y, splits.train, idx, teacher, feats)
    target = torch.from_numpy(splits.train.targets["digit"][idx])
    ce = F.cross_entropy(y["digit"], target)
    kd = kd_loss("classification", y["digit"], teacher["digit"], 2.0)
    fl = feature_loss("cosine", tr.projection(feats), teacher[FEATURES])
    assert float(total.detach()) == pytest.approx(float((0.3 * ce + 0.7 * kd + 0.5 * fl).detach()), rel=1e-5)
    assert set(parts) == {"digit", "digit/kd", "feature_kd"}


def test_teacher_sees_the_students_flips(teacher_run):
    from edgetl.data import load_splits
    from edgetl.data.transforms import hflip
    from edgetl.evaluate.torch_eval import model_inputs
    from edgetl.train.distill import FEATURES, Teacher

    rec = _recipe(**{"distill": {"teacher": str(teacher_run.dir)}, "data.augment": "hflip"})
    splits = load_splits(rec)
    t = Teacher.from_spec(rec, splits, "cpu")
    idx = np.arange(6)
    flip = torch.tensor([True, False, True, True, False, False])
    got = t.outputs_rows(splits.train, idx, "cpu", flip=flip)
    x = hflip(model_inputs(t.prep, splits.train, idx), flip=flip)
    with torch.no_grad():
        want = t.backbone(x)
    torch.testing.assert_close(got[FEATURES], want)
    assert not torch.allclose(got[FEATURES], t.outputs_rows(splits.train, idx, "cpu")[FEATURES])


def test_backbone_spec_teacher_feature_distillation(tmp_path):
    from edgetl.train.loop import train

    rec = _recipe(
        **{
            "name": "fd",
            "backbone.weights": "none",
            "distill": {"teacher": {"name": "mobilenet_v2", "weights": "offline"}, "feature": "mse"},
        }
    )
    run = train(rec, runs_dir=tmp_path, progress=False)
    row = run.metrics()[-1]
    assert np.isfinite(row["train_loss"]) and row["val"]["digit"]["n"] == 32
    assert (run.checkpoints / "last.distill.safetensors").is_file()
