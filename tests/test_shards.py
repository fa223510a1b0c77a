"""WebDataset shards: a folder or manifest -> shards (`edgetl shard`), which train like the folder itself, are
readable by webdataset's own streaming reader, and whose bad members are skipped or named in one line."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from test_lazy_images import _photos, _recipe
from typer.testing import CliRunner

from edgetl.cli import app
from edgetl.data import load_splits
from edgetl.data.shards import write_shards
from edgetl.errors import EdgetlError
from edgetl.train.loop import train

pytest.importorskip("webdataset")


def _shard_recipe(path, **over):
    r = _recipe(path, **over)
    return r.model_copy(update={"data": r.data.model_copy(update={"source": "webdataset", "path": str(path)})})


def test_folder_to_shards_trains_like_the_folder(tmp_path):
    root = _photos(tmp_path / "p")
    res = CliRunner().invoke(app, ["shard", str(root), str(tmp_path / "s"), "--shard-size", "10"])
    assert res.exit_code == 0, res.output
    tars = sorted((tmp_path / "s").glob("*.tar"))
    assert len(tars) == 6  # 52 samples, 10 per shard
    folder, shards = load_splits(_recipe(root)), load_splits(_shard_recipe(tmp_path / "s"))
    assert shards.info["sizes"] == folder.info["sizes"] and shards.labels == folder.labels
    for a, b in ((folder.train, shards.train), (folder.val, shards.val)):
        assert np.array_equal(np.stack(a.inputs(np.arange(len(a)))), np.stack(b.inputs(np.arange(len(b)))))
        assert np.array_equal(a.targets["colour"], b.targets["colour"])
    ra = train(_recipe(root, **{"train.epochs": 1}), name="folder", runs_dir=tmp_path / "runs", progress=False)
    rb = train(_shard_recipe(tmp_path / "s", **{"train.epochs": 1}), name="shards", runs_dir=tmp_path / "runs",
               progress=False)  # fmt: skip
    assert [m["train_loss"] for m in ra.metrics()] == [m["train_loss"] for m in rb.metrics()]


def test_shards_are_standard_webdataset(tmp_path):
    import webdataset as wds

    root = _photos(tmp_path / "p", per_class=(3, 1))
    write_shards(root, tmp_path / "s", shard_size=4)
    got = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "s").glob("*.tar")), shardshuffle=False))
    assert len(got) == 8 and all({"jpg", "json"} <= set(s) for s in got)
    assert {json.loads(s["json"])["label"] for s in got} == {"red", "blue"}
    assert {json.loads(s["json"])["split"] for s in got} == {"train", "val"}


def test_manifest_to_shards_and_bad_members(tmp_path):
    root = _photos(tmp_path / "p", per_class=(6, 2))
    rows = [f"train/{c}/{i:03d}.jpg,{c}" for c in ("red", "blue") for i in range(6)]
    (root / "m.csv").write_text("path,colour\n" + "\n".join(rows) + "\n")
    write_shards(root / "m.csv", tmp_path / "s", shard_size=100)
    d = _shard_recipe(tmp_path / "s")
    d = d.model_copy(update={"tasks": [d.tasks[0].model_copy(update={"column": "colour"})]})
    s = load_splits(d)
    assert sum(s.info["sizes"].values()) >= 12 and s.labels["colour"] == ["blue", "red"]
    with pytest.raises(EdgetlError, match="already holds .tar shards"):
        write_shards(root / "m.csv", tmp_path / "s")
    # a sample without labels, and a tar that is not one: one line naming the shard
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "a.tar", "w") as tf:
        tf.add(root / "train" / "red" / "000.jpg", arcname="x.jpg")
    with pytest.raises(EdgetlError, match=r"a.tar: sample 'x' has no .json member"):
        load_splits(_shard_recipe(bad))
    (bad / "a.tar").write_bytes(b"not a tar at all" * 40)
    with pytest.raises(EdgetlError, match=r"a.tar: not a readable tar shard"):
        load_splits(_shard_recipe(bad))
    with pytest.raises(EdgetlError, match="no .tar shards"):
        load_splits(_shard_recipe(tmp_path / "p"))
