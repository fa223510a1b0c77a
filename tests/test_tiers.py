"""The test tiers are derived from what a test does (tests/conftest.py): check the derivation itself."""

from __future__ import annotations

from pathlib import Path

from conftest import _HEAVY, _heavy_names

TESTS = Path(__file__).resolve().parent


def test_training_fixtures_and_cli_helpers_are_heavy():
    heavy = _heavy_names(sorted(str(p) for p in TESTS.glob("*.py")))
    assert {"trained_run", "exported_run"} <= heavy  # conftest's session fixtures train and export
    assert "bundle" in heavy  # test_bundle's fixture, heavy through exported_run (the fixpoint)
    assert "tiny_recipe" not in heavy and "tiny_recipe_dict" not in heavy  # building a recipe is not


def test_heavy_pattern_matches_what_trains_and_not_what_reads():
    for src in ('train(rec, runs_dir=d)', 'export_run(run.dir, opts)', 'subprocess.run([sys.executable, "-m", "edgetl"])',
                'runner.invoke(app, ["train", str(p)])'):  # fmt: skip
        assert _HEAVY.search(src), src
    for src in ("recipe_from_dict(d)", "read_manifest(bundle)", "retrain = 3", "constrain(x)"):
        assert not _HEAVY.search(src), src


def test_every_collected_test_has_exactly_one_tier(request):
    items = request.session.items
    tiers = {"unit", "integration", "e2e"}
    wrong = [i.nodeid for i in items if len({m.name for m in i.iter_markers()} & tiers) != 1]
    assert not wrong, wrong[:5]
    assert any(i.get_closest_marker("unit") for i in items) or len(items) < 50
