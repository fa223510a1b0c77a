"""The run directory: everything a training run produced, and what later steps read back.

runs/<name>/
  recipe.yaml        resolved recipe (overrides applied)
  splits.json        row indices of train/val/test in the source dataset + label lists
  metrics.jsonl      one JSON object per epoch (per-task metrics, losses, learning rates)
  checkpoints/       best.safetensors, last.safetensors (weights: what export/eval read),
                     last.state.safetensors (the resume commit: its own weights + optimizer + RNG + counters)
  run.json           status, versions, best epoch and score (+ its per-task validation figure and the test
                     split's), the start-of-run summary, the budget (optimizer_steps, examples_seen)
  export/            the deploy bundle (edgetl export)
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.recipe import Recipe, load_recipe
from edgetl.runtime.atomic import atomic_write_text

DEFAULT_RUNS_DIR = Path("runs")


@dataclass
class Run:
    dir: Path
    _recipe: Recipe | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def recipe_path(self) -> Path:
        return self.dir / "recipe.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def export_dir(self) -> Path:
        return self.dir / "export"

    def checkpoint(self, which: str = "best") -> Path:
        return self.checkpoints / f"{which}.safetensors"

    def recipe(self) -> Recipe:
        """recipe.yaml, read and validated once per Run: every step handed this Run shares that one reading
        (train writes the file once, before anything reads it; a resume or an export never rewrites it)."""
        if self._recipe is None:
            self._recipe = load_recipe(self.recipe_path)
        return self._recipe

    def splits(self) -> dict:
        return read_json(self.dir / "splits.json")

    def info(self) -> dict:
        p = self.dir / "run.json"
        return read_json(p) if p.is_file() else {}

    def write_info(self, **updates) -> None:
        info = self.info()
        info.update(updates)
        write_json(self.dir / "run.json", info)

    def metrics(self) -> list[dict]:
        p = self.dir / "metrics.jsonl"
        if not p.is_file():
            return []
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line after a kill: everything before it is good
        return rows


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EdgetlError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgetlError(f"{path}: invalid JSON ({e})") from None


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def new_run_dir(name: str, runs_dir: Path = DEFAULT_RUNS_DIR, exist_ok: bool = False) -> Path:
    """runs/<name>, or runs/<name>-2, -3 ... if taken (never overwrite an earlier run unless `exist_ok`).

    `exist_ok` reuses runs/<name>: an earlier edgetl run there (or an empty folder) is removed first, so no
    stale checkpoint or bundle survives; a folder holding anything else is refused.
    """
    runs_dir.mkdir(parents=True, exist_ok=True)
    cand = runs_dir / name
    if exist_ok and cand.is_dir():
        contents = list(cand.iterdir())
        if contents and not ((cand / "recipe.yaml").is_file() or (cand / "run.json").is_file()):
            raise EdgetlError(f"--exist-ok: {cand} is not an edgetl run folder; pick another --name")
        shutil.rmtree(cand)
    elif exist_ok and cand.exists():
        raise EdgetlError(f"--exist-ok: {cand} exists and is not a folder; pick another --name")
    n = 1
    while True:
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            n += 1
            cand = runs_dir / f"{name}-{n}"


def open_run(path: str | Path) -> Run:
    p = Path(path)
    if not p.is_dir():
        alt = DEFAULT_RUNS_DIR / str(path)
        if alt.is_dir():
            p = alt
        else:
            raise EdgetlError(f"run directory not found: {path}")
    if not (p / "recipe.yaml").is_file():
        raise EdgetlError(f"{p} is not an edgetl run (no recipe.yaml)")
    return Run(p)


def latest_run(name: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Run | None:
    """The newest runs/<name>[-N] (for `--resume` without a path)."""
    if not runs_dir.is_dir():
        return None
    pat = re.compile(rf"^{re.escape(name)}(-\d+)?$")
    cands = [d for d in runs_dir.iterdir() if d.is_dir() and pat.match(d.name) and (d / "recipe.yaml").is_file()]
    if not cands:
        return None
    return Run(max(cands, key=lambda d: int(d.name.rsplit("-", 1)[1]) if d.name != name else 1))


def require_finished(run: Run) -> None:
    """Export needs a finished run: say so (and how to resume) instead of `missing file: splits.json`."""
    status = run.info().get("status")
    missing = [p.name for p in (run.dir / "splits.json", run.checkpoint("best")) if not p.is_file()]
    if status in (None, "completed") and not missing:
        return
    why = f"status: {status}" if status not in (None, "completed") else f"no {missing[0]}"
    raise EdgetlError(
        f"{run.dir} has not finished training ({why}); resume it with "
        f"`edgetl train --resume {run.dir}` (or train it again)"
    )


def list_runs(runs_dir: Path = DEFAULT_RUNS_DIR) -> list[dict]:
    """One row per run folder under `runs_dir`, newest first: status (from run.json), best score, bundle."""
    if not Path(runs_dir).is_dir():
        raise EdgetlError(f"runs folder not found: {runs_dir}")
    rows = []
    for d in Path(runs_dir).iterdir():
        if not d.is_dir() or not ((d / "recipe.yaml").is_file() or (d / "run.json").is_file()):
            continue
        try:
            info = read_json(d / "run.json") if (d / "run.json").is_file() else {}
        except EdgetlError:
            info = {"status": "unreadable run.json"}
        manifest = d / "export" / "manifest.json"
        artifacts = []
        if manifest.is_file():
            try:
                artifacts = list(read_json(manifest).get("artifacts", {}))
            except (EdgetlError, AttributeError):
                artifacts = ["?"]
        rows.append(
            {
                "name": d.name,
                "dir": str(d),
                "status": info.get("status", "unknown"),
                "error": info.get("error"),
                "recipe": info.get("recipe"),
                "backbone": info.get("backbone"),
                "best_score": info.get("best_score"),
                "best_epoch": info.get("best_epoch"),
                "epochs_done": info.get("epochs_done"),
                "started_utc": info.get("started_utc"),
                "bundle": str(manifest.parent) if manifest.is_file() else None,
                "artifacts": artifacts,
                "_mtime": d.stat().st_mtime,
            }
        )
    rows.sort(key=lambda r: r.pop("_mtime"), reverse=True)
    return rows


def run_cells(r: dict) -> list[str]:
    """One run's cells, in `RUN_COLUMNS` order, whole (no cell is ever cut short)."""
    score = r.get("best_score")
    return [
        r["name"],
        r["status"] + (f": {r['error']}" if r.get("error") else ""),
        f"{score:.4f}" if isinstance(score, (int, float)) and score == score and abs(score) != float("inf") else "-",
        str(r.get("best_epoch") or "-"),
        str(r.get("backbone") or "-"),
        f"{r['bundle']} ({', '.join(r['artifacts'])})" if r.get("bundle") else "-",
    ]


RUN_COLUMNS = ("run", "status", "best score", "epoch", "backbone", "bundle")


def print_runs(rows: list[dict], console=None) -> None:
    """`edgetl runs` for people: a table on a terminal; anywhere else (a pipe, a file, CI) plain tab-separated
    lines, one per run, that are never truncated or wrapped (`--json` is the form for programs)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        for cells in [list(RUN_COLUMNS), *map(run_cells, rows)]:
            console.file.write("\t".join(" ".join(c.split()) for c in cells) + "\n")  # rich would expand the tabs
        return
    t = Table(title="runs")
    for h in RUN_COLUMNS:
        t.add_column(h, overflow="fold")
    colour = {"completed": "green", "failed": "red", "running": "yellow", "stopped": "yellow"}
    for r in rows:
        cells = run_cells(r)
        if r.get("error"):  # a table cell keeps the start of the error; plain output and run.json have all of it
            cells[1] = f"{r['status']}: {str(r['error'])[:60]}"
        t.add_row(
            escape(cells[0]), f"[{colour.get(r['status'], 'white')}]{escape(cells[1])}[/]", *map(escape, cells[2:])
        )
    console.print(t)
