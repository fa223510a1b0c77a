"""Quantization-aware training (QAT) with modelopt's torch quantization, for when PTQ misses the accuracy gate.

PTQ fixes INT8 scales once and leaves the weights alone; when that costs more than the budget (or passes only
by keeping layers in float), a short fine-tune through fake quantization lets the weights adapt to INT8.

Steps (`run_qat`):
1. the run's best checkpoint, BatchNorm folded into the convolutions that feed it: statistics stay frozen, and
   the weights that get quantized in training are the ones that are deployed;
2. `mtq.quantize(model, INT8_DEFAULT_CFG, forward_loop)`: per-channel symmetric weights, per-tensor activations,
   max-calibrated on the same stratified training sample as PTQ (never test). Activations that were never
   negative in calibration (after ReLU / ReLU6) become unsigned, so ONNX Runtime can drop the Clip/Relu and
   fuse the convolution; on CPUs without VNNI the weights train at 7 bits (ORT's `reduce_range`), because
   AVX2 u8 x s8 kernels can saturate with full 8-bit weights;
3. a few epochs with a small LR, the project's task losses, the recipe's frozen stages and batch size;
4. Q/DQ ONNX by `torch.onnx.export` (modelopt's symbolic emits QuantizeLinear/DequantizeLinear), rewritten
   into the layout ONNX Runtime CPU fuses into QLinearConv (`qdq_cpu`: int8 weight initializers, int32
   biases, uint8 activations; the same numbers).

Weights (with the calibrated quantizer ranges) go to `<run>/checkpoints/qat.safetensors`; the FP32 checkpoints
are read, never written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetl.errors import EdgetlError, UnverifiedError
from edgetl.runtime.tasks import get_kind

log = logging.getLogger("edgetl")

QAT_WEIGHTS = "qat.safetensors"


def require_mtq():
    """modelopt's torch quantization, or one line saying how to install it (it also needs `requests`)."""
    try:
        import modelopt.torch.quantization as mtq
    except ImportError as e:
        raise UnverifiedError(
            f"QAT needs nvidia-modelopt[torch]: pip install 'edgetl[modelopt]' "
            f"(nvidia-modelopt + requests); import failed: {e}"
        ) from None
    return mtq


# ------------------------------------------------------------------------------------------ BatchNorm folding
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every BatchNorm that reads a convolution's output straight into that convolution (eval statistics);
    returns how many were folded.

    Pairs are found by data flow on one forward of `example` (the BatchNorm's input *is* the conv's output), so
    any module layout works: torchvision Sequentials, ResNet blocks, timm blocks. A plain BatchNorm2d becomes
    Identity; timm's BatchNormAct2d keeps its dropout and activation. Other BatchNorm subclasses and convs
    called more than once are left alone.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    outputs: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # holds the outputs so their ids stay unique during the forward
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):

            def post(_m, _args, out, name=name):
                calls[name] = calls.get(name, 0) + 1
                outputs[id(out)] = name
                keep.append(out)

            hooks.append(mod.register_forward_hook(post))
        elif isinstance(mod, nn.BatchNorm2d) and mod.track_running_stats:

            def pre(_m, args, name=name):
                conv = outputs.get(id(args[0])) if args else None
                if conv is not None:
                    pairs.append((conv, name))

            hooks.append(mod.register_forward_pre_hook(pre))
    model.eval()
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    mods = dict(model.named_modules())
    count = 0
    for conv_name, bn_name in pairs:
        conv, bn = mods[conv_name], mods[bn_name]
        if calls.get(conv_name) != 1 or bn.num_features != conv.out_channels:
            continue
        if type(bn) is nn.BatchNorm2d:
            after: nn.Module = nn.Identity()
        elif type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act"):  # timm: batchnorm, drop, act
            after = nn.Sequential(getattr(bn, "drop", nn.Identity()), bn.act)
        else:
            continue
        _set_module(model, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        _set_module(model, bn_name, after)
        count += 1
    return count


def _set_module(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


# ------------------------------------------------------------------------------------------ quantize + calibrate
def _quantized_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "input_quantizer") and m.input_quantizer.is_enabled]


def quantize_model(model: nn.Module, batches: list[torch.Tensor], weight_bits: int = 8) -> dict:
    """Insert modelopt INT8 quantizers and calibrate (max) on `batches`; returns what was done.

    Activation quantizers whose calibration inputs were never negative become unsigned (0..255: twice the
    resolution, and the Clip/Relu before them becomes redundant for ONNX Runtime).
    """
    mtq = require_mtq()
    mins: dict[str, float] = {}

    def loop(m):
        hooks = []
        for name, mod in _quantized_modules(m):

            def pre(_mod, args, name=name):
                if args and isinstance(args[0], torch.Tensor):
                    mins[name] = min(mins.get(name, math.inf), float(args[0].detach().min()))

            hooks.append(mod.register_forward_pre_hook(pre))
        with torch.no_grad():
            for x in batches:
                m(x)
        for h in hooks:
            h.remove()

    _register_padded_convs()
    model.eval()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # modelopt prints a summary
        warnings.simplefilter("ignore")
        mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=loop)
    unsigned = 0
    mods = _quantized_modules(model)
    for name, mod in mods:
        if mins.get(name, -1.0) >= 0.0:
            mod.input_quantizer.unsigned = True
            unsigned += 1
        wq = getattr(mod, "weight_quantizer", None)
        if wq is not None and wq.is_enabled:
            wq.num_bits = weight_bits
    return {
        "quantized_modules": len(mods),
        "unsigned_inputs": unsigned,
        "module_types": sorted({type(m).__name__ for _, m in mods}),
    }


def _register_padded_convs() -> None:
    """timm's Conv2dSame (TF 'same' padding: pads in its forward, then convolves) is an nn.Conv2d subclass with
    its own forward, which modelopt does not quantize unless told (EfficientNet-Lite0's stem and stride-2
    depthwise convs). Its input quantizer runs before the zero padding; with the image size fixed, the padding
    ends up as the Conv's own `pads` in the simplified ONNX, so ORT fuses it like any other convolution."""
    try:
        from timm.layers.conv2d_same import Conv2dSame
    except ImportError:
        return
    import modelopt.torch.quantization as mtq

    if Conv2dSame in mtq.QuantModuleRegistry:
        return
    try:  # private: the quantized-Conv2d mixin modelopt registers for nn.Conv2d (docs/compatibility.md)
        from modelopt.torch.quantization.nn.modules.quant_conv import _QuantConv2d
    except ImportError:
        log.warning("modelopt has no _QuantConv2d: timm Conv2dSame layers stay in float for QAT")
        return
    mtq.register(original_cls=Conv2dSame, quantized_cls=_QuantConv2d)


def widen_weight_quantizers(model: nn.Module) -> int:
    """7-bit weight quantizers -> 8-bit ones that give the same numbers, for ONNX export (which wants 8 bits).

    Clamping each weight to its channel's [-amax, amax] changes nothing after quantization; then 8 bits with
    amax * 127/63 has the 7-bit scale amax/63 (up to float rounding: a weight exactly on a rounding boundary
    can move one step), so the exported int8 weights stay within [-63, 63].
    """
    n = 0
    for _, mod in _quantized_modules(model):
        wq = getattr(mod, "weight_quantizer", None)
        if wq is None or not wq.is_enabled or wq.num_bits != 7 or wq.amax is None:
            continue
        amax = wq.amax.detach()
        with torch.no_grad():
            mod.weight.copy_(torch.maximum(torch.minimum(mod.weight, amax), -amax))
        wq.num_bits = 8
        wq.amax = amax * (127.0 / 63.0)
        n += 1
    return n


# ------------------------------------------------------------------------------------------ fine-tuning
def finetune(model: nn.Module, loaded, spec, say=print) -> dict:
    """A few epochs through fake quantization: the recipe's task losses, batch size, seed and frozen stages.

    The model stays in eval mode (folded BatchNorm, frozen statistics of any left, no dropout); the LR decays
    on a cosine from `spec.lr` over the steps.
    """
    from edgetl.data.augment import flip_targets, uses_hflip
    from edgetl.data.mixing import epoch_order
    from edgetl.data.transforms import flip_mask, hflip
    from edgetl.evaluate.torch_eval import call_model, model_inputs
    from edgetl.train.freezing import apply_freeze, frozen_prefix
    from edgetl.train.losses import task_loss

    recipe = loaded.recipe
    r = recipe.train
    ex = loaded.splits.train
    k = frozen_prefix(r.freeze, model.backbone.num_stages, r.epochs - 1)  # the stages frozen at the end of training
    apply_freeze(model.backbone, k)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise EdgetlError("QAT: nothing to train (every parameter is frozen)")
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(ex) / r.batch_size)
    total = (
        spec.epochs * steps_per_epoch if spec.max_steps is None else min(spec.max_steps, spec.epochs * steps_per_epoch)
    )
    weights = {t.name: t.weight for t in recipe.tasks}
    specs = {t.name: t for t in recipe.tasks}
    gen = torch.Generator().manual_seed(r.seed * 7919 + 1)
    model.eval()
    losses, step, t0 = [], 0, time.perf_counter()
    for epoch in range(spec.epochs):
        order = epoch_order(r.seed + 1, epoch, len(ex))
        run_sum, seen = 0.0, 0
        for s in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[s * r.batch_size : (s + 1) * r.batch_size]
            x = model_inputs(loaded.prep, ex, idx)
            flip = None
            if uses_hflip(recipe.data.augment) and not isinstance(x, dict):
                flip = flip_mask(len(x), gen)  # the draw hflip(x, gen) makes, kept for the masks of dense tasks
                x = hflip(x, flip=flip)
            y = call_model(model, x)
            loss = sum(y[n].float().sum() for n in y) * 0.0
            for name, kind in loaded.kinds.items():
                target = torch.from_numpy(np.ascontiguousarray(ex.targets[name][idx]))
                if flip is not None and get_kind(kind).dense:  # a mask (or boxes) flips with its image
                    geometry = get_kind(kind).target_geometry or "mask"
                    moved = flip_targets(target, geometry, recipe.input.image_size)
                    target = torch.where(flip[:, None, None], moved, target)
                part = task_loss(kind, y[name], target, r.label_smoothing, specs[name])
                if part is not None:
                    loss = loss + weights[name] * part
            if not torch.isfinite(loss):
                raise EdgetlError(f"QAT: loss is {float(loss)} at step {step + 1} (lower export.qat.lr?)")
            for g in opt.param_groups:
                g["lr"] = spec.lr * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
        if seen:
            losses.append(round(run_sum / seen, 5))
            say(f"QAT epoch {epoch + 1}/{spec.epochs}: train loss {losses[-1]:.4f} ({step}/{total} steps)")
        if step >= total:
            break
    for p in model.parameters():
        p.requires_grad_(False)
    return {
        "steps": step,
        "epochs_run": len(losses),
        "train_loss": losses,
        "frozen_stages": k,
        "trainable_params": int(sum(p.numel() for p in params)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------------------------ ONNX for ORT CPU
def compare_to_torch(model: nn.Module, onnx_path: Path, loaded, samples: int) -> dict:
    """ORT (as deployed: default optimizations, fused integer kernels) vs the PyTorch fake-quant model on
    validation examples: max |diff| of the outputs and top-1 agreement per task."""
    from edgetl.evaluate.onnx_eval import onnx_outputs, ort_session
    from edgetl.evaluate.torch_eval import predict_torch

    ex = loaded.splits.val
    sub = ex.take(np.arange(min(samples, len(ex))))
    ref = predict_torch(model, loaded.prep, sub, batch_size=64)
    got = onnx_outputs(ort_session(onnx_path), loaded.prep, sub, tasks=loaded.model.output_tasks())
    rep = {
        "samples": len(sub),
        "reference": "PyTorch fake-quant model (modelopt)",
        "max_abs_diff": {},
        "top1_agreement": {},
        "logit_range": {},
    }
    for t in loaded.model.task_names:
        rep["max_abs_diff"][t] = float(np.abs(got[t] - ref[t]).max())
        rep["logit_range"][t] = float(ref[t].max() - ref[t].min())
        agree = get_kind(loaded.kinds[t]).agreement(ref[t], got[t])
        if agree is not None:
            rep["top1_agreement"][t] = agree
    return rep


# ------------------------------------------------------------------------------------------ entry point
def run_qat(
    loaded,
    out: Path,
    feeds: list[dict],
    spec,
    *,
    fp32_path: Path,
    base_val: dict,
    max_drop: float,
    reason: str,
    say=print,
    latency: bool = True,
    threads: int | None = None,
) -> dict:
    """QAT from the run's best checkpoint to a Q/DQ ONNX at `out`, scored on the validation split.

    Returns {"settings", "val", "gate", "verification"} in the shape the other INT8 artifacts use.
    """
    from edgetl.evaluate.metrics import task_drops
    from edgetl.evaluate.onnx_eval import evaluate_onnx
    from edgetl.export.onnx_export import export_onnx
    from edgetl.quantize.cpu_features import needs_reduce_range
    from edgetl.quantize.gate import within_budget
    from edgetl.quantize.ort_int8 import ort_fused_ops
    from edgetl.quantize.qdq_cpu import to_ort_cpu_layout
    from edgetl.runs.checkpoint import load_model
    from edgetl.runtime.manifest import sha256_file

    if loaded.model.backbone.kind == "text":
        raise EdgetlError("QAT (export.qat / --qat) supports image backbones only; text models use dynamic INT8")
    require_mtq()
    t0 = time.perf_counter()
    if loaded.recipe.train.num_threads:
        torch.set_num_threads(loaded.recipe.train.num_threads)
    torch.manual_seed(loaded.recipe.train.seed)
    model = copy.deepcopy(loaded.model)  # the loaded FP32 model stays as it is (other artifacts use it)
    ck = loaded.run.checkpoint("best")
    if not ck.is_file():
        ck = loaded.run.checkpoint("last")
    load_model(model, ck)
    model.eval()
    batches = [torch.from_numpy(f["input"]) for f in feeds]
    folded = fold_batchnorm(model, batches[0][:2])
    weight_bits = 7 if needs_reduce_range() else 8
    qinfo = quantize_model(model, batches, weight_bits=weight_bits)
    say(
        f"QAT ({reason}): {qinfo['quantized_modules']} modules quantized by modelopt "
        f"({qinfo['unsigned_inputs']} with unsigned inputs), {folded} BatchNorm folded, {weight_bits}-bit weights; "
        f"fine-tuning {spec.epochs} epoch(s) at lr {spec.lr:g}"
        + (f", at most {spec.max_steps} steps" if spec.max_steps else "")
    )
    train_info = finetune(model, loaded, spec, say=say)
    widened = widen_weight_quantizers(model)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(loaded, out, opset=loaded.recipe.export.opset, model=model)
    rewritten = to_ort_cpu_layout(out, feeds)
    weights_path = save_qat_weights(
        model,
        loaded.run.checkpoints / QAT_WEIGHTS,
        {"source_checkpoint": ck.name, "bn_folded": folded, "weight_bits": weight_bits, **train_info},
    )
    verification = compare_to_torch(model, out, loaded, loaded.recipe.export.verify_samples)
    ops = ort_fused_ops(out)
    convs = {k: v for k, v in ops.items() if k in ("QLinearConv", "Conv", "FusedConv")}
    say(
        "QAT ONNX on ONNX Runtime CPU: "
        + ", ".join(f"{k} {v}" for k, v in convs.items())
        + f"; vs PyTorch fake-quant: max|diff| {max(verification['max_abs_diff'].values()):.3g}"
        + "".join(f", {t} top-1 agreement {a:.1%}" for t, a in verification["top1_agreement"].items())
    )

    val = evaluate_onnx(out, loaded, "val")
    d = task_drops(base_val, val, loaded.kinds)
    gate = {
        "max_drop": max_drop,
        "metric_split": "validation",
        "passed": within_budget(d, max_drop),
        "drop": {t: round(v, 4) for t, v in d.items()},
        "excluded_nodes": [],
        "searched": False,
    }
    if latency:
        from edgetl.evaluate.onnx_eval import feeds_for
        from edgetl.quantize.speed import compare_latency, speedup

        x = feeds_for(loaded.prep, loaded.splits.val, np.arange(1))
        res = compare_latency({"fp32": Path(fp32_path), "qat": out}, x, threads=threads, min_rounds=15, budget_s=4.0)
        gate["latency"] = {
            "batch": res["batch"],
            "threads": res["threads"],
            "rounds": res["rounds"],
            "fp32_ms": round(res["ms"]["fp32"]["p50"], 4),
            "int8_ms": round(res["ms"]["qat"]["p50"], 4),
            "speedup_vs_fp32": round(speedup(res, "fp32", "qat"), 3),
        }
        gate["slower_than_fp32"] = gate["latency"]["speedup_vs_fp32"] < 1.0
    gate["seconds"] = round(time.perf_counter() - t0, 1)
    settings = {
        "backend": "modelopt-torch-qat",
        "format": "QDQ",
        "config": "INT8_DEFAULT_CFG (algorithm max)",
        "weights": f"int8 symmetric per-channel ({weight_bits}-bit values"
        + (": CPU without VNNI, like ORT's reduce_range)" if weight_bits == 7 else ")"),
        "activations": "uint8 per-tensor: unsigned after ReLU-like layers, else symmetric int8 ranges shifted to "
        "zero point 128",
        "target": "cpu",
        "reduce_range": weight_bits == 7,
        "bn_folded": folded,
        **qinfo,
        "ort_layout": rewritten,
        "weight_quantizers_widened": widened,
        "ort_ops": ops,
        "qat": {
            "reason": reason,
            "epochs": spec.epochs,
            "lr": spec.lr,
            "max_steps": spec.max_steps,
            "batch_size": loaded.recipe.train.batch_size,
            **train_info,
            "weights_file": str(weights_path),
            "weights_sha256": sha256_file(weights_path),
        },
    }
    return {"settings": settings, "val": val, "gate": gate, "verification": verification}


def save_qat_weights(model: nn.Module, path: Path, meta: dict) -> Path:
    """Tensors of the QAT model (BatchNorm folded, quantizer ranges included) as safetensors; never a pickle."""
    from safetensors.torch import save as st_save

    from edgetl.runtime.atomic import atomic_write_bytes

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, st_save(state, metadata={"format": "edgetl-qat", "json": json.dumps(meta)}))
    return path
