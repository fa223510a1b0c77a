"""Recipe schema: validation, overrides, one-line errors, safe YAML only."""

import pytest
import yaml
from conftest import REPO, tiny_recipe_dict

from edgetl.errors import EdgetlError
from edgetl.recipe import apply_overrides, load_recipe, parse_override, recipe_from_dict


def test_every_shipped_recipe_validates():
    paths = sorted((REPO / "recipes").glob("*.yaml"))
    assert paths, "no recipes shipped"
    for p in paths:
        r = load_recipe(p)
        assert r.tasks and r.backbone.name


def test_overrides_nested_and_typed(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(tiny_recipe_dict()))
    r = load_recipe(p, ["train.epochs=3", "train.lr=1e-4", "train.freeze.policy=linear_probe", "tasks.0.weight=2"])
    assert r.train.epochs == 3 and r.train.lr == pytest.approx(1e-4)
    assert r.train.freeze.policy == "linear_probe" and r.tasks[0].weight == 2.0


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.epochz=3", "command-line argument 'train.epochz=3': train.epochz: unknown key; did you mean 'epochs'?"),
        ("train.epochs=abc", "train.epochs"),
        ("train.optimizer=adam", "must be one of: 'adamw' or 'sgd'"),
        ("train.freeze.policy=half", "train.freeze.policy"),
        ("data.source=mnist", "unknown data source 'mnist'"),
        ("tasks.3.weight=1", "index '3' out of range"),
        ("noequals", "is not key=value"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, needle):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(tiny_recipe_dict()))
    with pytest.raises(EdgetlError) as e:
        load_recipe(p, [override])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(EdgetlError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(EdgetlError, match="invalid YAML"):
        load_recipe(bad)


def test_python_tags_are_refused(tmp_path):
    """Recipes can never construct objects or run code: safe_load rejects python tags."""
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['touch /tmp/edgetl-pwned']\n")
    with pytest.raises(EdgetlError, match="invalid YAML"):
        load_recipe(p)


def test_text_recipe_on_image_dataset_is_refused():
    d = tiny_recipe_dict()
    d["input"] = {"kind": "text", "max_length": 64}
    with pytest.raises(EdgetlError, match="input.kind is 'text' but data.source 'digits' holds images"):
        recipe_from_dict(d)


def test_duplicate_task_names_refused():
    d = tiny_recipe_dict(tasks=[{"name": "a", "column": "label"}, {"name": "a", "column": "parity"}])
    with pytest.raises(EdgetlError, match="duplicate task names: a"):
        recipe_from_dict(d)


def test_parse_override_yaml_values():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=true") == (["a"], True)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}
