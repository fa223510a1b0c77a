"""Shared fixtures: tiny offline recipes and one trained+exported run reused across tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def set_dotted(d: dict, over: dict) -> dict:
    """Set {"a.b.c": value} keys in a nested recipe dict (values stay Python objects, unlike CLI overrides)."""
    for k, v in over.items():
        cur = d
        parts = k.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return d


def tiny_recipe_dict(**over) -> dict:
    """MobileNetV2 (real offline ImageNet weights) on scikit-learn digits at 32 px: seconds per epoch."""
    d = {
        "name": "tiny",
        "backbone": {"name": "mobilenet_v2", "weights": "offline"},
        "input": {"kind": "image", "image_size": 32},
        "tasks": [{"name": "digit", "kind": "classification", "column": "label"}],
        "data": {
            "source": "digits",
            "split": {
                "val_fraction": 0.15,
                "test_fraction": 0.15,
                "limit_train": 300,
                "limit_val": 120,
                "limit_test": 120,
            },
        },
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.002, "seed": 0, "num_threads": 2},
        "export": {"calibration": {"size": 64}, "verify_samples": 64},
    }
    set_dotted(d, over)
    return d


@pytest.fixture
def tiny_recipe():
    from edgetl.recipe import recipe_from_dict

    return lambda **over: recipe_from_dict(tiny_recipe_dict(**over))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny trained run (2 tasks: digit + parity), shared by export/bench/runtime tests."""
    from edgetl.recipe import recipe_from_dict
    from edgetl.train.loop import train

    rec = recipe_from_dict(
        tiny_recipe_dict(
            **{
                "tasks": [{"name": "digit", "column": "label"}, {"name": "parity", "column": "parity"}],
                "train.epochs": 2,
            }
        )
    )
    return train(rec, runs_dir=tmp_path_factory.mktemp("runs"), progress=False)


@pytest.fixture(scope="session")
def exported_run(trained_run):
    from edgetl.bundle.pipeline import ExportOptions, export_run

    export_run(trained_run.dir, ExportOptions(int8=True, target="cpu", progress=False))
    return trained_run
