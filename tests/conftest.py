"""Shared fixtures: tiny offline recipes and one trained+exported run reused across tests."""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Hypothesis profiles. "ci" (the default) derandomizes: the same examples on every run, so the suite passes or
# fails the same way on the same code; examples it once found are pinned with @example. "fuzz-campaign"
# draws new random examples each run, for benchmarks/reliability.py (EDGETL_HYPOTHESIS_PROFILE=fuzz-campaign).
# Loaded here, before any test module builds its @settings, which inherit from the loaded profile.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("fuzz-campaign", derandomize=False, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("EDGETL_HYPOTHESIS_PROFILE", "ci"))

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


# ------------------------------------------------------------------------------------- SSH bench (test_remote*)
@pytest.fixture(scope="module")
def ssh_bundle(tmp_path_factory):
    """test_remote_sshd's tiny torch-free image bundle (its bench data 75 % right), for the SSH bench tests."""
    from test_remote_sshd import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundle") / "export")


@pytest.fixture(scope="module")
def light_install(tmp_path_factory):
    """(python wrapper that blocks torch and the other heavy packages, its folder): a device's light install."""
    from test_remote_sshd import light_python

    return light_python(tmp_path_factory.mktemp("light"))


@pytest.fixture
def silent_port():
    """A local port that accepts TCP and then says nothing (a hung device)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop, held = threading.Event(), []

    def accept():
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    for c in held:
        c.close()
    srv.close()


# ---------------------------------------------------------------------------------------------------- test tiers
# unit:        no training, no model export, no child process (`pytest -m unit`: about a minute)
# integration: trains, builds or exports a small model, or runs the CLI in a process, directly or through a
#              fixture (the contributors' fast tier, -m "not slow", adds it)
# e2e:         marked `slow` (whole recipes through the CLI, kill-and-resume campaigns); CI runs everything
# The tier is derived, not hand-kept: a test (or any fixture it uses, transitively) whose code calls one of
# the heavy entry points below is integration. A new heavy entry point goes into _HEAVY.
_HEAVY = re.compile(
    r"\b(train|export_run|run_qat|quantize_cpu_with_gate|quantize_tensorrt_with_gate|load_run|Trainer|_run_cli"
    r"|edgetl_cli|build_cache|build_model|export_onnx|subprocess\.run|subprocess\.Popen|check_output)\("
    r"|\[\s*\"(train|export|bench)\"|\"-m\",\s*\"edgetl\"|sys\.executable"
)


def _heavy_names(paths) -> set[str]:
    """Module-level helpers and fixtures (in these files) whose code is heavy, calls a heavy helper, or (for
    fixtures) uses a heavy fixture: computed to a fixpoint."""
    defs: list[tuple[str, str, set[str]]] = []  # (name, code, parameters); a name may be defined in several files
    for path in paths:
        for node in ast.parse(Path(path).read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("test_"):
                defs.append((node.name, ast.unparse(node), {a.arg for a in node.args.args}))
    heavy = {name for name, src, _ in defs if _HEAVY.search(src)}
    while True:
        calls = re.compile(r"\b(" + "|".join(map(re.escape, sorted(heavy))) + r")\(") if heavy else None
        more = {
            name
            for name, src, params in defs
            if name not in heavy and (params & heavy or (calls is not None and calls.search(src)))
        }
        if not more:
            return heavy
        heavy |= more


def pytest_collection_modifyitems(config, items):
    files = {str(item.path) for item in items} | {str(Path(__file__))}
    heavy = _heavy_names(sorted(files))
    calls = re.compile(r"\b(" + "|".join(map(re.escape, sorted(heavy))) + r")\(") if heavy else None
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.e2e)
            continue
        func = getattr(item, "function", None)
        try:
            src = inspect.getsource(func) if func is not None else ""
        except (OSError, TypeError):
            src = ""
        if _HEAVY.search(src) or (calls is not None and calls.search(src)) or heavy & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
