"""Multi-task models: several label columns of one dataset, or tasks from several datasets (per-source
splits, missing labels masked, sampling ratios), per-task metrics and checkpoint selection on a declared metric."""

import json

import numpy as np
import pytest
from conftest import set_dotted, tiny_recipe_dict
from helpers import edgetl_cli, one_error_line

from edgetl.data import load_splits
from edgetl.data.builtin import FASHION_CLASSES, FASHION_GROUP_OF
from edgetl.data.mixing import epoch_rows, ratios_of, split_counts
from edgetl.errors import EdgetlError
from edgetl.recipe import recipe_from_dict

SMALL = {
    "data.split": {"val_fraction": 0.15, "test_fraction": 0.15, "limit_train": 64, "limit_val": 32, "limit_test": 32},
    "train.batch_size": 16,
}


def _mixed(**over):
    """digits (task `digit`) + a Fashion-MNIST subset (task `garment`), 8x8 and 28x28 grey images."""
    d = tiny_recipe_dict(**SMALL)
    d["tasks"] = [{"name": "digit", "column": "label"}, {"name": "garment", "column": "label", "dataset": "fashion"}]
    d["extra_data"] = {
        "fashion": {"source": "fashion-mnist", "split": {"limit_train": 48, "limit_val": 20, "limit_test": 20}}
    }
    set_dotted(d, over)
    return recipe_from_dict(d)


def test_two_tasks_from_one_dataset_share_rows():
    d = tiny_recipe_dict(**SMALL)
    d["data"]["source"] = "fashion-mnist"
    d["tasks"] = [{"name": "category", "column": "label"}, {"name": "group", "column": "group"}]
    s = load_splits(recipe_from_dict(d))
    assert s.labels["group"] == ["tops", "bottoms", "footwear", "bags"]
    for ex in (s.train, s.val, s.test):
        cat, grp = ex.targets["category"], ex.targets["group"]
        assert (cat >= 0).all() and (grp >= 0).all()
        want = [s.labels["group"].index(FASHION_GROUP_OF[FASHION_CLASSES.index(s.labels["category"][c])]) for c in cat]
        assert grp.tolist() == want


def test_stratify_column_gives_other_task_sets_the_same_rows():
    d = tiny_recipe_dict(**SMALL)
    both = load_splits(
        recipe_from_dict({**d, "tasks": [{"name": "digit", "column": "label"}, {"name": "parity", "column": "parity"}]})
    )
    alone = {**d, "tasks": [{"name": "parity", "column": "parity"}]}
    assert load_splits(recipe_from_dict(alone)).info["indices"] != both.info["indices"]  # stratified by parity
    alone["data"] = {**d["data"], "split": {**d["data"]["split"], "stratify": "label"}}
    assert load_splits(recipe_from_dict(alone)).info["indices"] == both.info["indices"]


def test_tasks_from_two_datasets_are_combined_with_missing_labels():
    rec = _mixed()
    s = load_splits(rec)
    info = s.info
    assert [d["name"] for d in info["datasets"]] == ["data", "extra_data.fashion"]
    assert info["sizes_per_dataset"]["train"] == [64, 48] and info["sizes_per_dataset"]["val"] == [32, 20]
    tr = s.train
    assert tr.images is None and len(tr.image_list) == 112  # 8x8 and 28x28: kept at their own sizes
    own = tr.dataset == 0
    assert (tr.targets["digit"][own] >= 0).all() and (tr.targets["digit"][~own] == -1).all()
    assert (tr.targets["garment"][~own] >= 0).all() and (tr.targets["garment"][own] == -1).all()
    assert {im.shape for im, d in zip(tr.image_list, tr.dataset) if d == 1} == {(28, 28, 1)}
    assert s.labels["garment"] == FASHION_CLASSES and s.labels["digit"] == [str(i) for i in range(10)]
    # splits.json reproduces exactly (global indices into the concatenation)
    again = load_splits(rec, json.loads(json.dumps(info["indices"])))
    assert all(np.array_equal(a, b) for a, b in zip(again.test.image_list, s.test.image_list))
    assert np.array_equal(again.test.dataset, s.test.dataset)
    # the first source's split is the one a single-dataset recipe gets
    alone = load_splits(recipe_from_dict(tiny_recipe_dict(**SMALL)))
    assert info["indices"]["train"][:64] == alone.info["indices"]["train"]


def test_mixed_batches_preprocess_per_size():
    from edgetl.data.transforms import ImagePreprocess

    prep = ImagePreprocess((16, 16))
    rng = np.random.default_rng(0)
    ims = [
        rng.integers(0, 255, (8, 8, 1), dtype=np.uint8),
        rng.integers(0, 255, (28, 28, 1), dtype=np.uint8),
        rng.integers(0, 255, (8, 8, 1), dtype=np.uint8),
        rng.integers(0, 255, (5, 7, 3), dtype=np.uint8),
    ]
    got = prep(ims)
    for i, im in enumerate(ims):
        np.testing.assert_allclose(got[i].numpy(), prep(im[None])[0].numpy(), atol=1e-6)


def test_sampling_ratios_per_dataset():
    ids = np.array([0] * 100 + [1] * 20)
    assert split_counts(120, [3, 1]).tolist() == [90, 30]
    order = epoch_rows(0, 0, 120, ids, [3, 1])
    assert len(order) == 120 and (ids[order] == 1).sum() == 30  # the small source is oversampled
    assert len(set(order[ids[order] == 1])) == 20  # ... cycling through all of its rows
    assert np.array_equal(order, epoch_rows(0, 0, 120, ids, [3, 1]))  # pure function of (seed, epoch)
    assert not np.array_equal(order, epoch_rows(0, 1, 120, ids, [3, 1]))
    from edgetl.data.mixing import epoch_order

    assert np.array_equal(epoch_rows(5, 2, 120), epoch_order(5, 2, 120))  # no ratios: the plain order
    assert ratios_of(_mixed()) is None
    assert ratios_of(_mixed(**{"data.ratio": 2, "extra_data.fashion.ratio": 1})) == [2.0, 1.0]
    with pytest.raises(EdgetlError, match="extra_data.fashion.ratio: set a sampling ratio on every dataset"):
        ratios_of(_mixed(**{"data.ratio": 2}))
    with pytest.raises(EdgetlError, match="only used to mix several datasets"):
        ratios_of(recipe_from_dict(tiny_recipe_dict(**{"data.ratio": 2})))


def test_multi_dataset_training_masks_missing_labels(tmp_path):
    from edgetl.train.loop import train

    rec = _mixed(**{"data.ratio": 1, "extra_data.fashion.ratio": 1, "train.epochs": 1})
    run = train(rec, runs_dir=tmp_path, progress=False)
    row = run.metrics()[-1]
    assert np.isfinite(row["train_loss"])
    assert row["val"]["digit"]["n"] == 32 and row["val"]["garment"]["n"] == 20  # each scored on its own rows
    assert json.loads((run.dir / "splits.json").read_text())["datasets"][1]["source"] == "fashion-mnist"


def test_bad_multi_dataset_recipes_are_one_line_errors():
    from edgetl.train.checks import check_recipe

    d = tiny_recipe_dict(**SMALL)
    d["extra_data"] = {"unused": {"source": "digits"}}
    with pytest.raises(EdgetlError, match="extra_data.unused: no task uses this dataset"):
        check_recipe(recipe_from_dict(d))
    with pytest.raises(EdgetlError, match="does not hold image examples"):
        check_recipe(_mixed(**{"extra_data.fashion.source": "bbc-news"}))
    with pytest.raises(EdgetlError, match="extra_data.fashion: fashion-mnist has no label column 'colour'"):
        load_splits(
            _mixed(
                **{
                    "tasks": [
                        {"name": "digit", "column": "label"},
                        {"name": "garment", "column": "colour", "dataset": "fashion"},
                    ]
                }
            )
        )


def test_task_without_labels_is_one_line_error(tmp_path):

    import yaml

    (tmp_path / "a.csv").write_text("text,topic,mood\n" + "".join(f"row {i},t{i % 2},\n" for i in range(20)))
    d = {
        "name": "x",
        "backbone": {"name": "minilm"},
        "input": {"kind": "text", "max_length": 16},
        "tasks": [{"name": "topic"}, {"name": "mood"}],
        "data": {"source": "csv", "path": str(tmp_path / "a.csv")},
    }
    with pytest.raises(EdgetlError, match="task 'mood': no labels found in column 'mood'"):
        load_splits(recipe_from_dict(d))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(d))
    line = one_error_line(edgetl_cli("train", tmp_path / "r.yaml", "--runs-dir", tmp_path / "runs", "-q"))
    assert line == "error: task 'mood': no labels found in column 'mood'"


def test_select_metric_picks_the_declared_metric(tmp_path):
    from edgetl.train.checks import check_recipe
    from edgetl.train.loop import train

    with pytest.raises(
        EdgetlError, match="task 'parity' is classification; its metrics are accuracy, macro_f1 \\(got 'mae'\\)"
    ):
        check_recipe(
            recipe_from_dict(
                tiny_recipe_dict(
                    **{
                        "tasks": [{"name": "digit", "column": "label"}, {"name": "parity", "column": "parity"}],
                        "train.select_metric": "parity/mae",
                    }
                )
            )
        )
    with pytest.raises(EdgetlError, match="is not one of: mean_accuracy, loss, digit/accuracy"):
        check_recipe(recipe_from_dict(tiny_recipe_dict(**{"train.select_metric": "accuracy"})))
    rec = recipe_from_dict(
        tiny_recipe_dict(
            **{
                **SMALL,
                "tasks": [{"name": "digit", "column": "label"}, {"name": "parity", "column": "parity"}],
                "train.select_metric": "parity/macro_f1",
                "train.epochs": 3,
                "train.freeze": {"policy": "linear_probe"},
                "train.lr": 0.01,
            }
        )
    )
    run = train(rec, runs_dir=tmp_path, progress=False)
    rows = run.metrics()
    f1 = [r["val"]["parity"]["macro_f1"] for r in rows]
    assert [r["score"] for r in rows] == f1
    assert run.info()["best_epoch"] == int(np.argmax(f1)) + 1
    from safetensors import safe_open

    with safe_open(str(run.checkpoint("best")), "pt") as f:  # best.safetensors is that epoch's weights
        assert json.loads(f.metadata()["epoch"]) == int(np.argmax(f1)) + 1
