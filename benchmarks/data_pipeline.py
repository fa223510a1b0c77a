"""Issue 12 acceptance: memory and time of `edgetl train` on folders of real-size JPEGs, new vs old data path.

    python benchmarks/data_pipeline.py [--sizes 1500 15000] [--old-size 1500] [--quickstart] [--skip-old]
        [--epochs 1] [--cache none|ram|disk] [--key NAME]

Generates image folders of 1024x768 JPEGs from a seed (4 classes: a coloured shape per class on a smooth,
noisy background; cached under /tmp/edgetl-jpegs-<n>, so reruns skip generation), then trains
recipes/imagefolder.yaml (MobileNetV2, offline ImageNet weights, 64 px, batch 32) for 1 epoch on each, every
run in its own subprocess:

- new: this tree (paths only, JPEG draft decode in DataLoader workers, `data.workers: auto`);
- old: the tree of commit 51d7d69 (every image decoded up front and kept in memory), extracted read-only with
  `git archive` into /tmp (no worktree, no checkout: nothing in the repository changes), on --old-size images.

Per run: wall time of the whole `train()` (load + 1 epoch + validation), the epoch's training-loop seconds
(metrics.jsonl `epoch_seconds`), the main process's peak RSS (getrusage) and the peak PSS of the whole process
tree (main + DataLoader workers, /proc/<pid>/smaps_rollup sampled every 0.2 s: shared pages counted once).
`--quickstart` also trains recipes/quickstart.yaml (in-memory Fashion-MNIST, 1 epoch) with both trees.
Prints a table with ratios, writes benchmarks/results/data_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "51d7d69"
CLASSES = ("red_disc", "green_square", "blue_triangle", "yellow_bar")
SIZE = (1024, 768)  # width, height

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from edgetl.recipe import load_recipe
from edgetl.train.loop import train
import edgetl
print("TREE " + edgetl.__file__, flush=True)
recipe_path, runs, name = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
run = train(load_recipe(recipe_path, sys.argv[4:]), name=name, runs_dir=Path(runs), progress=False, exist_ok=True)
wall = time.perf_counter() - t0
m = run.metrics()[-1]
val = next(iter(m["val"].values()))
print("RESULT " + json.dumps({
    "wall_s": wall,
    "epoch_s": m["epoch_seconds"],
    "val_accuracy": val.get("accuracy"),
    "skipped_images": m.get("skipped_images"),
    "main_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "children_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


# --------------------------------------------------------------------------------------------- data
def _one_image(args) -> None:
    path, cls, seed = args
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # smooth background: a random low-res field, upscaled
    bg = np.asarray(Image.fromarray(low).resize(SIZE, Image.BILINEAR), dtype=np.int16)
    bg = bg + rng.integers(-12, 13, (SIZE[1], SIZE[0], 1), dtype=np.int16)  # sensor-like noise
    im = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    cx, cy = rng.integers(200, 824), rng.integers(180, 588)
    r = int(rng.integers(90, 170))
    colour = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220), "yellow": (230, 220, 30)}
    name = CLASSES[cls]
    c = colour[name.split("_")[0]]
    if name.endswith("disc"):
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif name.endswith("square"):
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=c)
    elif name.endswith("triangle"):
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=c)
    else:
        d.rectangle([cx - r, cy - r // 4, cx + r, cy + r // 4], fill=c)
    im.save(path, quality=90)


def generate(n: int, seed: int = 0) -> Path:
    """/tmp/edgetl-jpegs-<n>/<class>/<i>.jpg; reused when complete (a `.done` marker)."""
    root = Path(f"/tmp/edgetl-jpegs-{n}")
    if (root / ".done").is_file():
        return root
    jobs = []
    for i in range(n):
        cls = i % len(CLASSES)
        d = root / CLASSES[cls]
        d.mkdir(parents=True, exist_ok=True)
        jobs.append((str(d / f"{i:06d}.jpg"), cls, seed * 1_000_003 + i))
    t0 = time.perf_counter()
    with Pool(min(2, os.cpu_count() or 1)) as pool:
        pool.map(_one_image, jobs, chunksize=64)
    (root / ".done").write_text(f"{n} images, seed {seed}, {time.perf_counter() - t0:.0f} s\n")
    return root


def old_tree() -> Path:
    """The edgetl of commit 51d7d69 (before this issue), extracted read-only from git into /tmp."""
    dest = Path(f"/tmp/edgetl-old-{OLD_COMMIT}")
    if not (dest / "edgetl" / "__init__.py").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", OLD_COMMIT, "edgetl", "recipes"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


# --------------------------------------------------------------------------------------------- runs
def _tree_pss_kb(pgid: int) -> int:
    total = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.getpgid(int(p.name)) != pgid:
                continue
            for line in (p / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except (OSError, ProcessLookupError, ValueError):
            continue
    return total


def run_child(tree: Path, recipe: Path, name: str, overrides: list[str], runs: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", CHILD, str(recipe), str(runs), name, *overrides]
    # cwd=tree: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd=str(tree), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_pss_kb(proc.pid))
            done.wait(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{name} failed (rc {proc.returncode}):\n{err[-3000:]}")
    res = json.loads(line[len("RESULT ") :])
    tree_line = next((x for x in out.splitlines() if x.startswith("TREE ")), "")
    if not tree_line[len("TREE ") :].startswith(str(tree)):
        raise SystemExit(f"{name}: imported {tree_line[5:]!r}, not the tree under test {tree}")
    res["tree_peak_pss_mb"] = peak[0] / 1024
    print(f"  {name}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()})}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1500, 15000])
    ap.add_argument("--old-size", type=int, default=1500)
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument("--quickstart", action="store_true", help="also train the in-memory quickstart, new vs old")
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per run; the table's epoch s is the last one's")
    ap.add_argument("--cache", default="none", help="data.cache of the new-path runs (none | ram | disk)")
    ap.add_argument("--key", default="latest", help="the entry of benchmarks/results/data_pipeline.json to (re)write")
    args = ap.parse_args()

    out: dict = {"cpu": _cpu(), "cpu_flags": _flags(), "nproc": os.cpu_count(), "runs": {}}
    runs = Path(tempfile.mkdtemp(prefix="edgetl-dp-runs-"))
    base = [f"train.epochs={args.epochs}"]
    for n in sorted(set(args.sizes) | ({args.old_size} if not args.skip_old else set())):
        t0 = time.perf_counter()
        root = generate(n)
        print(f"data: {n} JPEGs at {SIZE[0]}x{SIZE[1]} in {root} ({time.perf_counter() - t0:.0f} s)")
    for n in args.sizes:
        out["runs"][f"new_{n}"] = run_child(
            REPO,
            REPO / "recipes/imagefolder.yaml",
            f"new_{n}",
            [*base, f"data.path=/tmp/edgetl-jpegs-{n}", f"data.workers={args.workers}", f"data.cache={args.cache}"],
            runs,
        )
    if not args.skip_old:
        old = old_tree()
        out["runs"][f"old_{args.old_size}"] = run_child(
            old, old / "recipes/imagefolder.yaml", f"old_{args.old_size}", [*base, f"data.path=/tmp/edgetl-jpegs-{args.old_size}"], runs
        )  # fmt: skip
    if args.quickstart:
        old = old_tree()
        for which, tree in (("new", REPO), ("old", old)):
            out["runs"][f"quickstart_{which}"] = run_child(
                tree, tree / "recipes/quickstart.yaml", f"quickstart_{which}", base, runs
            )
    r = out["runs"]
    ratios = {}
    small, big = min(args.sizes), max(args.sizes)
    if small != big:
        ratios[f"pss_{big}_over_{small}"] = r[f"new_{big}"]["tree_peak_pss_mb"] / r[f"new_{small}"]["tree_peak_pss_mb"]
    o = f"old_{args.old_size}"
    if o in r and f"new_{args.old_size}" in r:
        nw = r[f"new_{args.old_size}"]
        ratios["wall_old_over_new"] = r[o]["wall_s"] / nw["wall_s"]
        ratios["epoch_old_over_new"] = r[o]["epoch_s"] / nw["epoch_s"]
        ratios["pss_old_over_new"] = r[o]["tree_peak_pss_mb"] / nw["tree_peak_pss_mb"]
    if "quickstart_new" in r:
        ratios["quickstart_epoch_new_over_old"] = r["quickstart_new"]["epoch_s"] / r["quickstart_old"]["epoch_s"]
    out["ratios"] = ratios
    print(f"\n{'run':<18}{'wall s':>9}{'epoch s':>9}{'main RSS MB':>13}{'tree PSS MB':>13}{'val acc':>9}")
    for k, v in r.items():
        print(
            f"{k:<18}{v['wall_s']:>9.1f}{v['epoch_s']:>9.1f}{v['main_maxrss_mb']:>13.0f}"
            f"{v['tree_peak_pss_mb']:>13.0f}{(v['val_accuracy'] or 0):>9.3f}"
        )
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    dest = REPO / "benchmarks/results/data_pipeline.json"
    kept = json.loads(dest.read_text()) if dest.exists() else {}  # earlier runs (other machines) stay
    kept[args.key] = out
    dest.write_text(json.dumps(kept, indent=2) + "\n")
    print(f"wrote {dest}")


def _flags() -> list[str]:
    """The CPU features INT8 and bf16 speed depend on (AVX-512 VNNI, AMX), as /proc/cpuinfo lists them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    have = set(text.split())
    return sorted(f for f in have if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16"})


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
