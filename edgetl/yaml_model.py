"""One way to turn a YAML file into a validated pydantic model, with one error format (recipes, device profiles).

Safe by construction: `yaml.safe_load` only, a size cap checked before reading, at most 100k values counted on
the parser's event stream (before objects are built) and again once anchors are expanded. Every problem is one
`EdgetlError` line: `<file>: <key.path>: <what is wrong> (got <value>)`; unknown keys suggest the closest
allowed one. Not imported by the runtime (pydantic and PyYAML are training-side dependencies).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from edgetl.errors import EdgetlError

MAX_VALUES = 100_000


def read_yaml(path: str | Path, what: str, max_bytes: int) -> Any:
    """Parse a YAML file: a regular file of at most `max_bytes` (checked before reading), safe_load only."""
    from edgetl.runtime.limits import read_limited

    p = Path(path)
    if not p.exists():
        raise EdgetlError(f"{what} file not found: {p}")
    try:
        text = read_limited(p, what, max_bytes).decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgetlError(f"cannot read {p}: {e}") from None
    try:
        _count_values(text, str(p), what)
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise EdgetlError(f"{p}:{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise EdgetlError(f"{p}: invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as e:  # e.g. `!!int xyz`, `!!timestamp x`
        raise EdgetlError(f"{p}: invalid YAML: a tagged value cannot be read ({type(e).__name__}: {e})") from None


def _count_values(text: str, source: str, what: str) -> None:
    """Refuse more than 100k scalars from the parser's event stream, before any object is built (a 1 MB
    flow list holds 500k of them); anchors are expanded later and counted by `plain_data`."""
    count = 0
    for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when built
        if isinstance(event, yaml.ScalarEvent):
            count += 1
            if count > MAX_VALUES:
                raise EdgetlError(f"{source}: more than {MAX_VALUES} values; a {what} holds a few hundred")


def plain_data(data: Any, source: str) -> Any:
    """Parsed YAML -> plain JSON types (dates, bytes, sets become strings). Refuses, in one line, non-scalar or
    odd keys, self-referencing anchors and alias bombs (more than 100k values once anchors are expanded)."""
    stack, count = [data], 0
    while stack:
        cur = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise EdgetlError(
                f"{source}: more than {MAX_VALUES} values once YAML anchors are expanded "
                "(self-referencing or exponential aliases?)"
            )
        if isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    try:
        return json.loads(json.dumps(data, default=str))
    except (TypeError, ValueError, RecursionError) as e:
        raise EdgetlError(f"{source}: not a plain YAML document ({e})") from None


def validate(
    model: type[BaseModel],
    data: Any,
    source: str,
    what: str,
    *,
    overrides: list[str] | None = None,
    tags: dict[str, type[BaseModel]] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> Any:
    """`model.model_validate(data)`, every failure as one `EdgetlError` line (see `validation_message`)."""
    if not isinstance(data, dict):
        raise EdgetlError(f"{source}: a {what} must be a YAML mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise EdgetlError(
            validation_message(err, source, model, overrides=overrides, tags=tags, hidden=hidden)
        ) from None


def load_yaml_model(path: str | Path, model: type[BaseModel], what: str, max_bytes: int) -> Any:
    """Read, plain-ify and validate one YAML file as `model`."""
    data = read_yaml(path, what, max_bytes)
    if isinstance(data, dict):
        data = plain_data(data, str(path))
    return validate(model, data, str(path), what)


def validation_message(
    err: ValidationError,
    source: str,
    model: type[BaseModel],
    overrides: list[str] | None = None,
    tags: dict[str, type[BaseModel]] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> str:
    """First problem only, on one line: `recipe.yaml: train.epochs: Input should be ... (got 'x')`.

    Unknown keys are reported before missing ones (a typo `task:` is the cause of `tasks: Field required`), and
    a problem under a key that a command-line override set is reported against that argument, not the file.
    `tags`: discriminated-union tags that pydantic puts in the error location (e.g. `image` -> ImageInput);
    `hidden`: union tags left out of the location shown (they are not keys the user wrote).
    """
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    e = errors[0]
    loc = ".".join(str(p) for p in e["loc"] if p not in hidden)
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        parent = _model_at(model, e["loc"][:-1], tags or {})
        allowed = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1, cutoff=0.6)
        msg = (
            f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
        ) + f" (allowed keys here: {', '.join(allowed) or '?'})"
    elif e["type"] == "literal_error":
        msg = msg.replace("Input should be", "must be one of:")
    elif e["type"] in ("union_tag_not_found", "union_tag_invalid"):
        field = e.get("ctx", {}).get("discriminator", "'kind'").strip("'")
        loc = f"{loc}.{field}"
        expected = e.get("ctx", {}).get("expected_tags") or ", ".join(f"'{t}'" for t in tags or {})
        names = [t.strip().strip("'") for t in expected.split(",") if t.strip()]
        msg = (
            f"`{loc}` is required: {' or '.join(names)} "
            f"(add {' or '.join(f'`{field}: {n}`' for n in names)} under `{loc.rsplit('.', 1)[0]}:`)"
            if e["type"] == "union_tag_not_found"
            else f"must be one of: {expected}"
        )
    got = e.get("input")
    got_s = (
        ""
        if e["type"] in ("missing", "extra_forbidden", "union_tag_not_found") or isinstance(got, dict)
        else f" (got {_repr(got)})"
    )
    if len(got_s) > 80:
        got_s = got_s[:77] + "...)"
    arg = _override_for(e["loc"], overrides or [], tags or {})
    if arg is not None:
        source = f"command-line argument {arg!r}"
    return f"{source}: {loc}: {msg}{got_s}" if loc else f"{source}: {msg}{got_s}"  # whole-recipe checks: no field


def _override_for(loc: tuple, overrides: list[str], tags: dict) -> str | None:
    """The last override whose key is the error's location or a section above/below it."""
    where = [str(p) for p in loc if p not in tags or p == loc[0]]
    for text in reversed(overrides):
        key = text.partition("=")[0].strip().split(".")
        n = min(len(key), len(where))
        if n and key[:n] == where[:n]:
            return text
    return None


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except ValueError:  # an integer too long to print (over 4300 digits)
        return f"<{type(value).__name__} too large to show>"


def _model_at(model: type[BaseModel], loc: tuple, tags: dict[str, type[BaseModel]]) -> type[BaseModel] | None:
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if cur is None or not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        if part in tags and part not in cur.model_fields:  # discriminated-union tag
            cur = tags[part]
            continue
        field = cur.model_fields.get(part)
        if field is None:
            return None
        cur = _first_model(field.annotation)
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _first_model(tp) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        m = _first_model(arg)
        if m is not None:
            return m
    return None
