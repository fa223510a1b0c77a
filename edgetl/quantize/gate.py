"""The accuracy gate for CPU INT8: quantize, score every task on the validation split against FP32, and if a
task loses more than the budget, keep the most harmful layers in float until every task passes.

The search (`gate_search`):
1. all-INT8 try: quantize everything, score the full validation split; every task within budget -> done.
2. sensitivity, leave-one-out on a validation subset. A unit is what it takes to keep one activation tensor
   in float: ONNX Runtime quantizes a tensor when any node next to it is quantized, so its producer and all
   its consumers (through Relu/Clip/Reshape/... which only pass quantization along) stay float together,
   weights included. For each unit, re-quantize with only that unit in float and measure how much closer the
   failing tasks' outputs get to FP32 (KL divergence of the softmax for classification, binary KL for
   multilabel, normalised MSE for regression). With many layers, contiguous groups are ranked first and
   only the units of the most harmful groups are ranked one by one. Calibration ranges are computed once;
   a re-quantization takes about a second.
3. keep the top-k units in float for k = 1, 2, 3, 4, 6, 9, 13, ... scoring each try on the full validation
   split; at the first k that passes, bisect back to the smallest passing k. Nothing left to keep in float
   and still failing: the gate fails and FP32 stays the bundle's default artifact.
4. latency: FP32, all-INT8 and every try timed side by side (interleaved, batch 1), so the report says what
   keeping layers in float cost, and whether the final INT8 model is faster than FP32 at all.

Every try (excluded nodes, per-task drops, latency) is recorded for the manifest's `quantization.gate`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgetl.evaluate.metrics import all_task_metrics, task_drops
from edgetl.runtime.cpuload import BUSY_SHARE
from edgetl.runtime.tasks import get_kind


# ------------------------------------------------------------------------------------------------ scoring
def within_budget(drop: dict[str, float], max_drop: float) -> bool:
    """Every task's drop (points) within the budget; the 1e-9 absorbs float noise in a drop of exactly max_drop."""
    return all(v <= max_drop + 1e-9 for v in drop.values())


def output_damage(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], kinds: dict[str, str], tasks: Sequence[str] | None = None
) -> float:
    """How far quantized outputs are from the FP32 ones, summed over `tasks` (default all); 0 = identical.

    Each task kind measures its own damage (its registry entry): KL of the softmaxes for classification,
    binary KL of the sigmoids for multilabel, MSE over the reference's variance for regression.
    """
    total = 0.0
    for t in tasks or list(kinds):
        total += get_kind(kinds[t]).damage(np.asarray(ref[t], np.float64), np.asarray(got[t], np.float64))
    return total


class Evaluator:
    """Scores ONNX models on one held-out split: task metrics on all of it, raw outputs on a fixed subset.

    `feeds(idx) -> {input name: array}` builds model inputs for example indices (pre-processed exactly like
    inference). FP32 reference outputs are computed once, from `fp32_path`.
    """

    def __init__(
        self,
        feeds: Callable[[np.ndarray], dict],
        n: int,
        targets: dict[str, np.ndarray],
        kinds: dict[str, str],
        labels: dict[str, list[str]],
        fp32_path: Path,
        *,
        batch_size: int = 64,
        subset: int = 256,
        seed: int = 0,
        cache_mb: int = 512,
        output_tasks: list | None = None,
    ):
        if n < 1:
            raise ValueError("the gate needs a non-empty validation split")
        self.feeds, self.n, self.targets, self.kinds, self.labels = feeds, n, targets, kinds, labels
        # (task, kind, output, output_format): how model outputs become one array per task (a detector's four)
        self.output_tasks = output_tasks or [(t, k, t, None) for t, k in kinds.items()]
        self.batch_size = batch_size
        self.subset_idx = np.sort(np.random.default_rng(seed).permutation(n)[: min(subset, n)])
        self._batches = [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        self._sub_batches = [self.subset_idx[s : s + batch_size] for s in range(0, len(self.subset_idx), batch_size)]
        self._cache: dict[tuple, dict] = {}
        self._cache_budget = cache_mb * 2**20
        self.fp32_path = Path(fp32_path)
        fp32 = self.session(self.fp32_path)
        self.fp32_outputs = self._outputs(fp32, self._batches, "full")
        self.fp32_subset = self._outputs(fp32, self._sub_batches, "sub")
        self.fp32_metrics = self.metrics(self.fp32_outputs)

    @classmethod
    def for_run(cls, loaded, fp32_path: Path, split: str = "val", **kw) -> Evaluator:
        from edgetl.evaluate.onnx_eval import feeds_for

        ex = getattr(loaded.splits, split)
        return cls(
            lambda idx: feeds_for(loaded.prep, ex, idx),
            len(ex),
            ex.targets,
            loaded.kinds,
            loaded.splits.labels,
            fp32_path,
            output_tasks=loaded.model.output_tasks(),
            **kw,
        )

    @staticmethod
    def session(path: Path, threads: int | None = None):
        from edgetl.evaluate.onnx_eval import ort_session

        return ort_session(Path(path), threads=threads)

    def _feed(self, key: tuple, idx: np.ndarray) -> dict:
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        f = self.feeds(idx)
        size = sum(v.nbytes for v in f.values())
        if size <= self._cache_budget:
            self._cache[key] = f
            self._cache_budget -= size
        return f

    def _outputs(self, sess, batches: list[np.ndarray], tag: str) -> dict[str, np.ndarray]:
        names = [o.name for o in sess.get_outputs()]
        outs: dict[str, list] = {n: [] for n in names}
        for i, idx in enumerate(batches):
            for name, arr in zip(names, sess.run(None, self._feed((tag, i), idx))):
                outs[name].append(arr)
        from edgetl.runtime.tasks import task_outputs

        return task_outputs(self.output_tasks, {n: np.concatenate(v) for n, v in outs.items()})

    def metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, dict]:
        return all_task_metrics(outputs, self.targets, self.kinds, self.labels)

    def score(self, path: Path) -> tuple[dict[str, dict], dict[str, float]]:
        """(metrics per task, drop in points vs FP32 per task) on the whole split."""
        m = self.metrics(self._outputs(self.session(path), self._batches, "full"))
        return m, task_drops(self.fp32_metrics, m, self.kinds)

    def damage(self, path: Path, tasks: Sequence[str] | None = None) -> float:
        """output_damage vs FP32 on the sensitivity subset."""
        return output_damage(
            self.fp32_subset, self._outputs(self.session(path), self._sub_batches, "sub"), self.kinds, tasks
        )

    def latency_feeds(self) -> dict[str, np.ndarray]:
        """One example (batch 1), as a deployed model would get it."""
        return self.feeds(np.arange(1))


# ------------------------------------------------------------------------------------------------ search
def k_schedule(n: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... capped at n (n itself last)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k = k + 1 if k < 4 else int(k * 1.5)
    ks.append(n)
    return sorted(set(ks))


def _split(cands: list, parts: int) -> list[list]:
    """Contiguous chunks (graph order) of about equal size."""
    size = math.ceil(len(cands) / max(1, parts))
    return [cands[i : i + size] for i in range(0, len(cands), size)]


def gate_search(
    quantizer,
    out: Path,
    ev: Evaluator,
    *,
    max_drop: float,
    search: bool = True,
    latency: bool = True,
    latency_budget_s: float = 6.0,
    threads: int | None = None,
    max_tries: int = 24,
    groups: int = 8,
    refine: int = 2,
    say: Callable[[str], None] = print,
) -> dict:
    """Run the gate with `quantizer` (OrtStaticQuantizer / OrtDynamicQuantizer); write the final model to `out`.

    Returns {"val": metrics of the final model, "gate": the record for the manifest}.
    """
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="edgetl-gate-")
    tries: list[dict] = []
    paths: list[Path] = []

    def attempt(excluded: list[str], note: str) -> dict:
        for r in tries:  # overlapping units: a larger k can give the same set of nodes
            if set(r["excluded"]) == set(excluded):
                return r
        p = Path(tmp.name) / f"try{len(tries)}.onnx"
        ts = time.perf_counter()
        quantizer.quantize(p, excluded)
        metrics, d = ev.score(p)
        rec = {
            "try": len(tries),
            "excluded": list(excluded),
            "n_excluded": len(excluded),
            "drop": {t: round(v, 4) for t, v in d.items()},
            "passed": within_budget(d, max_drop),
            "note": note,
            "seconds": round(time.perf_counter() - ts, 2),
            "_metrics": metrics,
        }
        tries.append(rec)
        paths.append(p)
        say(
            f"gate try {rec['try']}: {len(excluded)} layer(s) in float -> drop "
            + ", ".join(f"{t} {v:+.2f}" for t, v in d.items())
            + (" (passes)" if rec["passed"] else "")
        )
        return rec

    first = attempt([], "all layers INT8")
    failing = [t for t, v in first["drop"].items() if v > max_drop]
    gate: dict = {"max_drop": max_drop, "metric_split": "validation", "searched": False, "sensitivity": None}
    best = first
    if failing and search:
        cands = quantizer.candidates()
        say(
            f"gate: {', '.join(failing)} lose(s) more than {max_drop} point(s); sensitivity of {len(cands)} layers "
            f"(leave-one-out on {len(ev.subset_idx)} validation examples)"
        )
        ranking = _rank(quantizer, cands, ev, failing, Path(tmp.name), groups=groups, refine=refine)
        gate["searched"] = True
        gate["sensitivity"] = {
            "method": "leave-one-out: each unit (the nodes that keep one activation tensor float: its producer "
            "and consumers) in float alone, everything else INT8; with many layers, contiguous groups "
            "first, then the units of the most harmful groups",
            "metric": "reduction of KL(FP32 || INT8) on the failing tasks' outputs",
            "tasks": failing,
            "samples": int(len(ev.subset_idx)),
            "candidates": len(cands),
            "evaluations": ranking["evaluations"],
            "base_damage": ranking["base"],
            "seconds": ranking["seconds"],
            "groups": ranking["groups"],
            "units": ranking["layers"][:30],
        }
        order = [u["nodes"] for u in ranking["units"]]

        def excluded_for(k: int) -> list[str]:
            return list(dict.fromkeys(n for nodes in order[:k] for n in nodes))

        lo, hi = 0, None  # lo: largest k known to fail; hi: smallest k known to pass
        for k in k_schedule(len(order)):
            if len(tries) >= max_tries:
                break
            rec = attempt(excluded_for(k), f"top {k} sensitivity units in float")
            if rec["passed"]:
                hi = k
                break
            lo = k
        while hi is not None and hi - lo > 1 and len(tries) < max_tries:
            mid = (lo + hi) // 2
            rec = attempt(excluded_for(mid), f"top {mid} sensitivity units in float (bisect)")
            if rec["passed"]:
                hi = mid
            else:
                lo = mid
        passing = [r for r in tries if r["passed"]]
        best = (
            min(passing, key=lambda r: (r["n_excluded"], _worst(r["drop"])))
            if passing
            else min(tries, key=lambda r: _worst(r["drop"]))
        )
        if not passing:
            say(
                f"gate: no try met the budget ({len(tries)} tries"
                + (", every candidate layer in float" if lo == len(order) else f", stopped at {max_tries} tries")
                + ")"
            )
    elif failing:
        say(f"gate: drop {_worst(first['drop']):.2f} points > budget {max_drop} (search disabled)")

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(paths[best["try"]], out)  # the tries live in /tmp: a rename cannot cross file systems
    paths[best["try"]] = Path(out)
    ops = dict(quantizer.candidates())
    gate.update(
        {
            "passed": best["passed"],
            "drop": best["drop"],
            "excluded_nodes": best["excluded"],
            "excluded_ops": [ops.get(n, "?") for n in best["excluded"]],
            "final_try": best["try"],
        }
    )

    if latency:
        lat = _latency(ev, tries, paths, best, latency_budget_s, threads)
        gate["latency"] = lat
        gate["slower_than_fp32"] = lat["speedup_vs_fp32"] < 1.0
        lo, hi = lat["speedup_interval"]
        msg = (
            f"gate: INT8 {lat['int8_ms']:.2f} ms vs FP32 {lat['fp32_ms']:.2f} ms (x{lat['speedup_vs_fp32']:.2f}, "
            f"95% interval {lo:.2f}-{hi:.2f} over {lat['rounds']} rounds, batch 1, {lat['threads']} threads)"
        )
        if best["excluded"]:
            msg += f"; all-INT8 {lat['int8_all_ms']:.2f} ms: keeping {len(best['excluded'])} layer(s) in float costs x{lat['cost_vs_all_int8']:.2f}"
        say(msg)
        if not lat["spread_known"]:
            say(f"gate: note: the ratio is known only to {lo:.2f}-{hi:.2f} (the machine was noisy while timing)")
        if lat.get("other_cpu_share") is not None and lat["other_cpu_share"] > BUSY_SHARE:
            gate["warning"] = (
                f"other processes used {100 * lat['other_cpu_share']:.0f}% of the CPUs while the gate "
                "timed FP32 vs INT8: the ratio may be off (re-export on an idle machine)"
            )
            say(f"gate: warning: {gate['warning']}")
        if gate["slower_than_fp32"]:
            say("gate: the INT8 model is SLOWER than FP32 on this CPU: FP32 stays the default artifact")
    if best["excluded"]:
        say(f"gate: kept in float: {', '.join(best['excluded'][:8])}" + (" ..." if len(best["excluded"]) > 8 else ""))
    metrics = best["_metrics"]
    for r in tries:
        r.pop("_metrics", None)
    gate["tries"] = tries
    gate["seconds"] = round(time.perf_counter() - t0, 1)
    tmp.cleanup()
    return {"val": metrics, "gate": gate}


def _worst(drop: dict[str, float]) -> float:
    return max(drop.values())


def _rank(
    quantizer,
    cands: list[tuple[str, str]],
    ev: Evaluator,
    tasks: list[str],
    tmp: Path,
    *,
    groups: int = 8,
    refine: int = 2,
) -> dict:
    """Order sensitivity units (sets of nodes to keep in float) from most to least harmful to keep INT8.

    A unit is what it takes to keep one activation tensor in float: its producer and consumers (see
    `OrtStaticQuantizer.units`; a single MatMul for dynamic quantization). Leave-one-out costs one
    re-quantization + subset evaluation per unit, so with many candidates it runs on `groups` contiguous groups
    of layers first, then on the units of the `refine` most harmful groups. The order is: those units by their
    own gain, then the remaining groups, whole, in gain order.
    """
    ts = time.perf_counter()
    p = tmp / "rank.onnx"
    quantizer.quantize(p, [])
    base = ev.damage(p, tasks)
    evals = 1

    def gain(nodes: list[str]) -> float:
        nonlocal evals
        quantizer.quantize(p, nodes)
        evals += 1
        return base - ev.damage(p, tasks)

    grouped = len(cands) > 2 * groups
    group_rows = None
    rest: list[dict] = []
    if not grouped:
        units = quantizer.units()
    else:
        chunks = _split(cands, groups)
        scored = sorted(((c, gain([n for n, _ in c])) for c in chunks), key=lambda x: -x[1])
        group_rows = [{"first": c[0][0], "last": c[-1][0], "size": len(c), "gain": round(g, 6)} for c, g in scored]
        anchors = [n for c, _ in scored[:refine] for n, _ in c]
        units = quantizer.units(anchors)
        rest = [
            {"anchor": f"group {c[0][0]} .. {c[-1][0]}", "nodes": [n for n, _ in c], "gain": g}
            for c, g in scored[refine:]
        ]
    for u in units:
        u["gain"] = gain(u["nodes"])
    units.sort(key=lambda u: -u["gain"])
    ordered = units + rest
    return {
        "base": round(base, 6),
        "units": ordered,
        "evaluations": evals,
        "seconds": round(time.perf_counter() - ts, 1),
        "groups": group_rows,
        "layers": [{"anchor": u["anchor"], "nodes": u["nodes"], "gain": round(u["gain"], 6)} for u in ordered],
    }


def _latency(
    ev: Evaluator, tries: list[dict], paths: list[Path], best: dict, budget_s: float, threads: int | None
) -> dict:
    from edgetl.quantize.speed import compare_latency, speedup, speedup_interval

    models = {"fp32": ev.fp32_path, "try0": paths[0]}
    for r in tries[1:]:
        models[f"try{r['try']}"] = paths[r["try"]]
    if len(models) > 8:  # too many to time well in the budget: the ones the report needs
        models = {k: v for k, v in models.items() if k in ("fp32", "try0", f"try{best['try']}")}
    res = compare_latency(
        models, ev.latency_feeds(), threads=threads, min_rounds=15, budget_s=budget_s * max(1.0, len(models) / 3)
    )
    ms = res["ms"]
    for r in tries:
        key = f"try{r['try']}"
        if key in ms:
            r["latency_ms"] = round(ms[key]["p50"], 4)
            r["speedup_vs_fp32"] = round(speedup(res, "fp32", key), 3)
    final = f"try{best['try']}"
    spread = speedup_interval(res, "fp32", final)
    return {
        "batch": res["batch"],
        "threads": res["threads"],
        "rounds": res["rounds"],
        "stat": "p50 ms; speedups are medians of per-round ratios (models interleaved)",
        "how": (
            f"ONNX Runtime CPU, batch {res['batch']}, {res['threads']} threads, {res['warmup_s']} s warm-up "
            "per model, one model running at a time (idle sessions' threads stopped), interleaved rounds"
        ),
        "cpu": res["cpu"],
        "cpu_threads": os.cpu_count(),
        "other_cpu_share": res["other_cpu_share"],
        "fp32_ms": round(ms["fp32"]["p50"], 4),
        "int8_all_ms": round(ms["try0"]["p50"], 4),
        "int8_ms": round(ms[final]["p50"], 4),
        "speedup_vs_fp32": round(speedup(res, "fp32", final), 3),
        # 95% interval of that median ratio; `edgetl bench` warns when its own ratio falls outside it
        "speedup_interval": [round(spread["lo"], 3), round(spread["hi"], 3)],
        "spread_known": res["spread_known"],
        "speedup_all_int8_vs_fp32": round(speedup(res, "fp32", "try0"), 3),
        "cost_vs_all_int8": round(speedup(res, "try0", final) ** -1, 3),
    }


# ------------------------------------------------------------------------------------------------ entry point
def quantize_cpu_with_gate(
    loaded,
    fp32: Path,
    out: Path,
    feeds: list[dict],
    *,
    method: str,
    max_drop: float,
    base_val: dict | None = None,
    gate: bool = True,
    say=print,
    mode: str = "auto",
    latency: bool = True,
    latency_budget_s: float = 6.0,
    threads: int | None = None,
    subset: int = 256,
) -> dict:
    """INT8 for CPU with the accuracy gate: static Q/DQ for images, dynamic for text (mode auto).

    Returns {"settings", "val", "gate"}; the final model is written to `out`.
    """
    from edgetl.errors import EdgetlError
    from edgetl.quantize.float_tail import float_tail, postprocessed_outputs
    from edgetl.quantize.ort_int8 import OrtDynamicQuantizer, OrtStaticQuantizer

    text = loaded.model.backbone.kind == "text"
    if mode == "auto":
        mode = "dynamic" if text else "static"
    if mode not in ("static", "dynamic"):
        raise EdgetlError(f"INT8 mode {mode!r}: allowed auto, static, dynamic")
    if mode == "dynamic":
        q = OrtDynamicQuantizer(fp32, text=text)
    else:
        q = OrtStaticQuantizer(fp32, feeds, method=method, text=text)
        q.keep_float = float_tail(q.pre_path, postprocessed_outputs(loaded))
        if q.keep_float:
            say(f"{len(q.keep_float)} decoding/NMS node(s) stay in float (after the last convolution)")
        say(f"calibrating activation ranges ({method}, {q.settings()['calibration_samples']} training examples)")
        q.calibrate()
    ev = Evaluator.for_run(loaded, fp32, "val", subset=subset, seed=loaded.recipe.train.seed)
    result = gate_search(
        q,
        out,
        ev,
        max_drop=max_drop,
        search=gate,
        latency=latency,
        latency_budget_s=latency_budget_s,
        threads=threads,
        say=say,
    )
    return {"settings": q.settings(), **result}


def quantize_tensorrt_with_gate(
    loaded,
    fp32: Path,
    out: Path,
    calib: dict,
    *,
    method: str,
    max_drop: float,
    gate: bool = True,
    say=print,
    subset: int = 256,
) -> dict:
    """modelopt INT8 (Q/DQ placed for TensorRT) with the same gate, scored on ONNX Runtime CPU.

    ORT runs modelopt's Q/DQ as fake quantization: the accuracy is a proxy for the engine's (measure the
    engine with `edgetl bench` on the device) and ORT latency means nothing here, so none is taken. Each
    re-quantization is a modelopt child process (seconds), so the ranking uses coarse groups and refines one.
    """
    from edgetl.quantize.float_tail import float_tail, postprocessed_outputs
    from edgetl.quantize.modelopt_int8 import ModeloptQuantizer

    q = ModeloptQuantizer(fp32, calib, method)
    q.keep_float = float_tail(fp32, postprocessed_outputs(loaded))
    ev = Evaluator.for_run(loaded, fp32, "val", subset=subset, seed=loaded.recipe.train.seed)
    result = gate_search(
        q, out, ev, max_drop=max_drop, search=gate, latency=False, say=say, groups=6, refine=1, max_tries=12
    )
    result["gate"]["note"] = "accuracy measured on ONNX Runtime CPU: a proxy until measured on a TensorRT engine"
    return {"settings": q.settings(), **result}
