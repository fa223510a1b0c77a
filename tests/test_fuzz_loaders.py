"""Property-based fuzzing of everything that reads user input: recipes (dicts, YAML files, overrides), bundle
manifests, CSV/JSONL dataset manifests. Every outcome must be a success or an `EdgetlError` with a one-line
message; any other exception is a bug (hypothesis shrinks it to a minimal failing input).

Each test counts the examples it tried and asserts the count; together they try more than 500 (see
`FUZZERS`; benchmarks/reliability.py runs them with larger budgets and prints the counts).
"""

from __future__ import annotations

import copy
import json
import string
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_recipe_dict  # noqa: E402
from helpers import image_input  # noqa: E402

from edgetl.errors import EdgetlError  # noqa: E402

# ---------------------------------------------------------------------------------------------- values
_KEYS = [
    "name",
    "backbone",
    "weights",
    "input",
    "kind",
    "image_size",
    "tasks",
    "column",
    "labels",
    "data",
    "source",
    "path",
    "split",
    "train",
    "epochs",
    "lr",
    "freeze",
    "policy",
    "export",
    "distill",
    "teacher",
    "extra_data",
    "dataset",
    "weight",
    "batch_size",
    "mean",
    "std",
    "x",
    "",
    "0",
    "__class__",
]
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
    st.sampled_from(_KEYS),
    st.sampled_from(
        [
            "digits",
            "csv",
            "jsonl",
            "imagefolder",
            "bbc-news",
            "image",
            "text",
            "classification",
            "regression",
            "multilabel",
            "offline",
            "none",
            "gradual",
            "first_k",
            "mobilenet_v2",
        ]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.one_of(st.sampled_from(_KEYS), _TEXT), kids, max_size=4)
    ),
    max_leaves=12,
)


def _one_line(e: EdgetlError) -> None:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)


def _outcome(counter: Counter, fn, *args, **kwargs):
    """Run `fn`; count success or EdgetlError; anything else propagates (a crash = a bug)."""
    counter["tried"] += 1
    try:
        out = fn(*args, **kwargs)
    except EdgetlError as e:
        _one_line(e)
        counter["error"] += 1
        return None
    counter["ok"] += 1
    return out


def _paths(d, prefix=()):
    """Every key path in a nested dict/list (for mutations)."""
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(base: dict, muts) -> dict:
    d = copy.deepcopy(base)
    paths = _paths(d)
    for pick, op, value, key in muts:
        path = paths[pick % len(paths)]
        parent = d
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        try:
            if op == "set":
                parent[last] = value
            elif op == "delete":
                del parent[last]
            elif op == "add" and isinstance(parent, dict):
                parent[key] = value
            elif op == "wrap":
                parent[last] = [parent[last]]
        except (KeyError, IndexError, TypeError):
            pass
        paths = _paths(d) or [("name",)]
    return d


_MUTATIONS = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.sampled_from(["set", "delete", "add", "wrap"]),
        _VALUES,
        st.one_of(st.sampled_from(_KEYS), _TEXT),
    ),
    min_size=1,
    max_size=4,
)

FUZZ_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def _text_recipe() -> dict:
    return {
        "name": "txt",
        "backbone": {"name": "minilm", "weights": "offline", "pooling": "mean"},
        "input": {"kind": "text", "max_length": 32},
        "tasks": [{"name": "topic", "column": "label"}],
        "data": {"source": "jsonl", "path": "data.jsonl"},
    }


# ---------------------------------------------------------------------------------------------- recipes
def fuzz_recipe_dicts(n: int) -> Counter:
    from edgetl.recipe import recipe_from_dict

    c: Counter = Counter()
    bases = [
        tiny_recipe_dict(),
        _text_recipe(),
        tiny_recipe_dict(**{"train.freeze": {"policy": "gradual", "stages": 2}, "distill": {"teacher": "runs/t"}}),
    ]

    @settings(max_examples=n, **FUZZ_SETTINGS)
    @given(st.one_of(st.tuples(st.sampled_from(range(len(bases))), _MUTATIONS), st.tuples(st.just(-1), _VALUES)))
    def run(case):
        which, muts = case
        data = muts if which < 0 else _mutate(bases[which], muts)
        _outcome(c, recipe_from_dict, data, "fuzz.yaml")

    run()
    return c


_YAML_SNIPPETS = [
    "!!python/object/apply:os.system ['echo pwned']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object/new:subprocess.Popen [['id']]",
    "!!binary aGVsbG8=",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "&a [1, *a]",
    "*undefined",
    "? [a, b]\n: 1",
    "{? !!binary aGk=: 1}",
    "[[[[[[[[[[]]]]]]]]]]",
    "'unterminated",
    "\t- tab",
    "0x1F",
    "0o17",
    ".nan",
    "-.inf",
    "~",
    "1e999",
    "!!float abc",
    "!!int xyz",
    "!!timestamp notadate",
    "!!str",
    "{a: 1, a: 2}",
    "- a\nb: c",
    "\x00",
    "\ufeffname: x",
]


def fuzz_recipe_files(n: int, tmp: Path) -> Counter:
    """YAML text (valid recipes with one line replaced by odd YAML) + overrides, through load_recipe."""
    from edgetl.recipe import load_recipe

    c: Counter = Counter()
    lines = yaml.safe_dump(tiny_recipe_dict(), sort_keys=False).splitlines()
    path = tmp / "fuzz.yaml"

    @settings(max_examples=n, **FUZZ_SETTINGS)
    @given(
        st.integers(0, len(lines) - 1),
        st.one_of(st.sampled_from(_YAML_SNIPPETS), _TEXT),
        st.booleans(),
        st.integers(0, 3000),
    )
    def run(line_no, snippet, as_key, depth):
        text = list(lines)
        indent = text[line_no][: len(text[line_no]) - len(text[line_no].lstrip())]
        if as_key:
            text[line_no] = f"{indent}{snippet}: 1"
        else:
            key = text[line_no].strip().split(":", 1)[0].lstrip("- ")
            text[line_no] = f"{indent}{key}: {snippet}"
        if depth > 2500:  # deep nesting: parser recursion limits
            text.append("extra: " + "[" * depth + "]" * depth)
        path.write_bytes("\n".join(text).encode("utf-8", "surrogatepass"))
        _outcome(c, load_recipe, path)

    run()
    return c


_OVERRIDE_KEYS = st.one_of(
    st.sampled_from(
        [
            "train.epochs",
            "train.lr",
            "tasks.0.weight",
            "tasks.0",
            "tasks",
            "tasks.1.name",
            "tasks.00.kind",
            "tasks.\u00b2.kind",
            "tasks.-1.kind",
            "tasks.9999999999999999999.kind",
            "data.split.limit_train",
            "name.sub",
            "input.kind",
            "backbone",
            "export.calibration.size",
            "train.freeze.policy",
            "extra_data.x.source",
            "a..b",
            ".x",
            "x.",
            " ",
            "distill.teacher",
        ]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "._\u00b2\u0663", max_size=20),
)
_OVERRIDE_VALUES = st.one_of(
    st.sampled_from(
        [
            "3",
            "1e-3",
            "true",
            "[1, 2]",
            "{a: 1}",
            "null",
            "",
            "!!python/name:os.system",
            "[",
            "]: x",
            "'",
            "1e999",
            "-1",
            "0",
            "gradual",
            "text",
            "{kind: text}",
            "[{name: a}]",
            "*a",
            "&a 1",
            "2001-01-01",
            "!!binary aGk=",
            "{? [a]: 1}",
        ]
    ),
    _TEXT,
)


def fuzz_overrides(n: int, tmp: Path) -> Counter:
    from edgetl.recipe import apply_overrides, load_recipe, parse_override

    c: Counter = Counter()
    path = tmp / "base.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict()))

    @settings(max_examples=n, **FUZZ_SETTINGS)
    @given(
        st.lists(
            st.one_of(st.tuples(_OVERRIDE_KEYS, _OVERRIDE_VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), _TEXT),
            min_size=1,
            max_size=3,
        )
    )
    def run(overrides):
        for o in overrides:
            _outcome(Counter(), parse_override, o)
        _outcome(Counter(), apply_overrides, copy.deepcopy(tiny_recipe_dict()), overrides)
        _outcome(c, load_recipe, path, overrides)

    run()
    return c


# --------------------------------------------------------------------------------------------- manifests
def valid_manifest() -> dict:
    h = "ab" * 32
    return {
        "schema_version": 1,
        "producer": {"name": "edgetl", "version": "0.1.0"},
        "backbone": "mobilenet_v2",
        "input": image_input((32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        "tasks": [
            {"name": "digit", "kind": "classification", "labels": [str(i) for i in range(10)], "output": "digit"},
            {"name": "size", "kind": "regression", "labels": [], "output": "size"},
        ],
        "artifacts": {
            "fp32": {
                "file": "model.fp32.onnx",
                "format": "onnx",
                "precision": "fp32",
                "target": "any",
                "sha256": h,
                "size_bytes": 10,
                "accuracy": {"digit": 0.9},
            }
        },
        "default_artifact": "fp32",
        "files": {"model.fp32.onnx": h, "labels/digit.txt": h},
    }


def valid_text_manifest() -> dict:
    m = valid_manifest()
    m["input"] = {
        "kind": "text",
        "names": ["input_ids", "attention_mask"],
        "dtype": "int64",
        "tokenizer": "tokenizer/tokenizer.json",
        "max_length": 128,
        "padding": "longest",
    }
    return m


_PATHISH = st.sampled_from(
    [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "C:\\x",
        "a\\b",
        "",
        " ",
        "a\x00b",
        "x" * 5000,
        "./ok",
        "ok/./x",
        "~/.ssh/id_rsa",
        "\u202e",
        "model.fp32.onnx",
        "labels/../../x",
    ]
)


def fuzz_manifests(n: int, tmp: Path) -> Counter:
    from edgetl.runtime.manifest import MANIFEST_NAME, parse_manifest, read_manifest

    c: Counter = Counter()
    bases = [valid_manifest(), valid_text_manifest()]
    bundle = tmp / "bundle"
    bundle.mkdir(exist_ok=True)

    @settings(max_examples=n, **FUZZ_SETTINGS)
    @given(
        st.one_of(
            st.tuples(
                st.sampled_from([0, 1]),
                st.lists(
                    st.tuples(
                        st.integers(0, 10_000),
                        st.sampled_from(["set", "delete", "add", "wrap"]),
                        st.one_of(_VALUES, _PATHISH),
                        st.one_of(st.sampled_from(_KEYS), _PATHISH),
                    ),
                    min_size=1,
                    max_size=4,
                ),
            ),
            st.tuples(st.just(-1), _VALUES),
        ),
        st.booleans(),
    )
    def run(case, through_file):
        which, muts = case
        data = muts if which < 0 else _mutate(bases[which], muts)
        if through_file:
            try:
                text = json.dumps(data)
            except (ValueError, TypeError):
                text = str(data)
            (bundle / MANIFEST_NAME).write_bytes(text.encode("utf-8", "surrogatepass"))
            _outcome(c, read_manifest, bundle)
        else:
            _outcome(c, parse_manifest, data, "fuzz/manifest.json", bundle)

    run()
    return c


# ------------------------------------------------------------------------------------------ CSV / JSONL
_CELL = st.one_of(
    st.sampled_from(
        [
            "a",
            "b",
            "c",
            "",
            " ",
            "train",
            "val",
            "test",
            "VAL",
            "1.5",
            "nan",
            "x|y",
            "a;b",
            "1e999",
            "-0",
            "\ufeff",
            "\x00",
            '"',
            '""',
            ",",
            "\n",
            "\r\n",
            "\ud800",
        ]
    ),
    _TEXT,
)
_HUGE = "__HUGE_INT__"  # written as a 5000-digit number (Python refuses to print ints over 4300 digits)
_JVAL = st.one_of(
    _CELL,
    st.integers(min_value=-(10**400), max_value=10**400),
    st.just(_HUGE),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(_CELL, max_size=3),
    st.dictionaries(_TEXT, _CELL, max_size=2),
)
_COLUMNS = ["text", "label", "score", "tags", "split"]


@st.composite
def _table(draw):
    """A plausible dataset (so loading can succeed), then a few corruptions: cells, header, raw bytes."""
    n = draw(st.integers(0, 30))
    rows = []
    for i in range(n):
        rows.append(
            {
                "text": f"document {i} " + draw(st.sampled_from(["", "news", "sport", "tech"])),
                "label": draw(st.sampled_from(["a", "b", "c"])),
                "score": draw(st.sampled_from(["0.5", "1", "-2.25", "3e2", ""])),
                "tags": draw(st.sampled_from(["a", "a|b", "b;c", "", "c"])),
                "split": draw(st.sampled_from(["train"] * 6 + ["val", "test", "VAL "])),
            }
        )
    header = list(_COLUMNS)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["cell", "cell", "cell", "drop_col", "rename_col", "dup_row", "drop_key"]))
        if op == "cell" and rows:
            r = draw(st.integers(0, len(rows) - 1))
            rows[r][draw(st.sampled_from(_COLUMNS))] = draw(_JVAL)
        elif op == "drop_col" and len(header) > 1:
            header.remove(draw(st.sampled_from(header)))
        elif op == "rename_col":
            i = draw(st.integers(0, len(header) - 1))
            header[i] = draw(st.sampled_from(["\ufefftext", "", "Text", "label ", "extra", "text"]))
        elif op == "dup_row" and rows:
            rows.append(dict(rows[draw(st.integers(0, len(rows) - 1))]))
        elif op == "drop_key" and rows:
            rows[draw(st.integers(0, len(rows) - 1))].pop(draw(st.sampled_from(_COLUMNS)), None)
    junk = draw(
        st.one_of(
            st.none(),
            st.none(),
            st.binary(max_size=30),
            st.sampled_from([b"\xff\xfe", b"\n\n", b"{", b"[1]\n", b"a,b,c,d,e,f,g\n", b"\x00"]),
        )
    )
    return header, rows, junk


def fuzz_csv_jsonl(n: int, tmp: Path) -> Counter:
    """Text datasets through load_splits (file reading, label encoding, splits, duplicate checks)."""
    import csv
    import io

    from edgetl.data import load_splits
    from edgetl.recipe import recipe_from_dict

    c: Counter = Counter()

    @settings(max_examples=n, **FUZZ_SETTINGS)
    @given(
        fmt=st.sampled_from(["csv", "jsonl"]),
        table=_table(),
        kinds=st.tuples(
            st.sampled_from(["classification", "classification", "multilabel", "regression"]),
            st.sampled_from(["multilabel", "regression"]),
        ),
        use_split=st.booleans(),
        declared=st.one_of(st.none(), st.none(), st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4)),
    )
    def run(fmt, table, kinds, use_split, declared):
        header, rows, junk = table
        path = tmp / f"data.{fmt}"
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(header)
            for r in rows:
                w.writerow(
                    [json.dumps(r.get(h)) if isinstance(r.get(h), (list, dict)) else r.get(h, "") for h in header]
                )
            text = buf.getvalue().replace(_HUGE, "9" * 5000)
        else:
            lines = []
            for r in rows:
                obj = {h: r[h] for h in header if h in r}
                try:
                    lines.append(json.dumps(obj))
                except (TypeError, ValueError):
                    lines.append(str(obj))
            text = "\n".join(lines).replace(f'"{_HUGE}"', "9" * 5000)
        path.write_bytes(text.encode("utf-8", "surrogatepass") + (junk or b""))
        recipe = _text_recipe()
        recipe["data"] = {"source": fmt, "path": str(path), "split": {"val_fraction": 0.3, "test_fraction": 0.2}}
        if use_split:
            recipe["data"]["split_column"] = "split"
        recipe["tasks"] = [
            {"name": "topic", "column": "label", "kind": kinds[0]},
            {"name": "extra", "column": "score" if kinds[1] == "regression" else "tags", "kind": kinds[1]},
        ]
        if declared is not None and kinds[0] != "regression":
            recipe["tasks"][0]["labels"] = declared
        _outcome(c, load_splits, recipe_from_dict(recipe))

    run()
    return c


# ------------------------------------------------------------------------------------------------ tests
# name -> (function, examples in CI); the total is asserted to be >= 500.
FUZZERS = {
    "recipe_dicts": (fuzz_recipe_dicts, 300),
    "recipe_files": (fuzz_recipe_files, 150),
    "overrides": (fuzz_overrides, 150),
    "manifests": (fuzz_manifests, 300),
    "csv_jsonl": (fuzz_csv_jsonl, 200),
}
TRIED: Counter = Counter()


def run_fuzzer(name: str, n: int | None = None) -> Counter:
    fn, default = FUZZERS[name]
    n = default if n is None else n
    if fn is fuzz_recipe_dicts:
        return fn(n)
    with tempfile.TemporaryDirectory(prefix="edgetl-fuzz-") as d:
        return fn(n, Path(d))


@pytest.mark.parametrize("name", list(FUZZERS))
def test_fuzz_loaders_only_succeed_or_raise_edgetl_error(name):
    c = run_fuzzer(name)
    _, n = FUZZERS[name]
    assert c["tried"] >= n, c  # hypothesis ran the whole budget (plus any shrinking)
    assert c["tried"] == c["ok"] + c["error"], c
    assert c["error"] > 0, c  # the generators do reach the error paths
    assert c["ok"] > 0, c  # ... and the success paths
    TRIED[name] = c["tried"]


def test_fuzz_budget_is_at_least_500():
    assert sum(n for _, n in FUZZERS.values()) >= 500
