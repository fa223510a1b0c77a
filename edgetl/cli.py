"""The `edgetl` command line: thin Typer wrappers over the library (every verb is one library call).

User mistakes (EdgetlError) are caught once, in `main()`: one line on stderr and a non-zero exit; anything else is
an internal error: one line naming the step, the exception and the loaded library versions, with the traceback in
a crash log (edgetl.crash);
`--debug` shows the traceback. Heavy imports happen inside commands so `edgetl --help` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgetl.errors import EdgetlError

app = typer.Typer(
    name="edgetl",
    help="Transfer learning to the edge: train -> export (ONNX, INT8, FP16, TensorRT) -> bench -> deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_STATE: dict = {"debug": False, "run_dir": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for programs) instead of a table.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        help="Ed25519 public key (PEM or OpenSSH): refuse a bundle whose manifest signature "
        "(manifest.json.sig, from `edgetl export --sign`) does not verify with it."
    ),
]
SignOpt = Annotated[
    Path | None,
    typer.Option(
        help="Ed25519 private key (PEM or OpenSSH, unencrypted): write manifest.json.sig, a detached "
        "signature of the manifest that `predict --public-key` / Predictor.load(public_key=...) check."
    ),
]
SkipVerifyOpt = Annotated[
    bool,
    typer.Option(
        "--skip-verify", help="Use a bundle whose files do not match their manifest sha256 (refused by default)."
    ),
]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False):
    _STATE["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(message)s")


def _console():
    from rich.console import Console

    return Console(stderr=True)


# --------------------------------------------------------------------------------------------------- train
RecipeArg = Annotated[
    str | None, typer.Argument(help="Recipe YAML file (or leave it out and give --data).", show_default=False)
]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.epochs=3")]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        help="Train on this folder of images or CSV/JSONL file without a recipe: edgetl picks one (printed, saved in the run dir). See docs/your-data.md."
    ),
]
TrainBackboneOpt = Annotated[
    str | None,
    typer.Option(
        help="With --data: the backbone (see `edgetl backbones`; default mobilenet_v2 for images, minilm for text)."
    ),
]
NameOpt = Annotated[str | None, typer.Option(help="Run name (default: the recipe's name); runs/<name>[-N].")]
RunsDirOpt = Annotated[Path, typer.Option(help="Where run directories go.")]
ExistOkOpt = Annotated[
    bool,
    typer.Option("--exist-ok", help="Reuse runs/<name> (an earlier run there is replaced) instead of runs/<name>-N."),
]
ResumeOpt = Annotated[
    str | None, typer.Option(help="Continue a run: its directory, or 'last' for the newest run of this recipe.")
]
LoggerOpt = Annotated[str, typer.Option(help="Also log to: tensorboard | none | auto (tensorboard when installed).")]


@app.command(
    epilog="Examples: edgetl train recipes/quickstart.yaml train.epochs=3 --name qs | edgetl train --data photos/ train.epochs=3 | edgetl train --resume runs/qs"
)
def train(
    recipe: RecipeArg = None,
    overrides: OverridesArg = None,
    data: DataOpt = None,
    backbone: TrainBackboneOpt = None,
    name: NameOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    exist_ok: ExistOkOpt = False,
    resume: ResumeOpt = None,
    logger: LoggerOpt = "auto",
    quiet: QuietOpt = False,
):
    """Fine-tune a pretrained backbone into a multi-task model (writes runs/<name>/)."""
    flags = dict(locals())  # the library call takes the flags under their own names
    from edgetl.train.start import train_command

    result = train_command(**flags, say=lambda msg: typer.echo(msg, err=True))
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports
        return
    from edgetl.train.summary import final_line

    info = result.info()
    typer.echo(final_line(result.dir, info))
    if info.get("status") == "completed":
        typer.echo(f"next: edgetl export {result.dir} --int8   then: edgetl bench {result.dir}", err=True)


@app.command(epilog="Example: edgetl init photos/ --out my-recipe.yaml")
def init(
    data: Annotated[Path, typer.Argument(help="Folder of images, or CSV/JSONL file.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.epochs=3")] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Backbone (default mobilenet_v2 for images, minilm for text).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the recipe here (default: print it).")] = None,
):
    """Write the starter recipe `edgetl train --data` would use, to edit and keep."""
    from edgetl.data.inspect import load_starter

    _, text = load_starter(data, backbone, list(overrides or []))
    if out is None:
        typer.echo(text.rstrip())
        return
    if out.exists():
        raise EdgetlError(f"--out {out}: exists; choose another file")
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}; train it with: edgetl train {out}")


@app.command(
    epilog="Example: edgetl shard photos/ shards/ --shard-size 1000  (then data.source=webdataset data.path=shards/)"
)
def shard(
    src: Annotated[Path, typer.Argument(help="Image folder (DIR/<class>/...), or a CSV/JSONL image manifest.")],
    out: Annotated[Path, typer.Argument(help="Empty folder for the shard-NNNNNN.tar files.")],
    shard_size: Annotated[int, typer.Option(help="Samples per shard.")] = 1000,
    path_column: Annotated[str, typer.Option(help="Manifest column with the image paths.")] = "path",
):
    """Write a dataset as WebDataset tar shards (original image bytes + a .json of labels per sample)."""
    from edgetl.data.shards import write_shards

    tars = write_shards(src, out, shard_size, path_column)
    typer.echo(f"wrote {len(tars)} shard(s) to {out}; train with: data.source=webdataset data.path={out}")


# --------------------------------------------------------------------------------------------------- runs
@app.command(epilog="Example: edgetl runs")
def runs(
    runs_dir: Annotated[Path, typer.Option(help="Where run directories are.")] = Path("runs"),
    as_json: JsonOpt = False,
):
    """List runs: status (completed / running / stopped / failed), best score and deploy bundle."""
    from edgetl.runs.layout import list_runs, print_runs

    rows = list_runs(runs_dir)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=float))
    else:
        print_runs(rows)


# -------------------------------------------------------------------------------------------------- export
Int8Opt = Annotated[
    bool, typer.Option("--int8", help="Also build an INT8 Q/DQ model (calibrated on the training split).")
]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="Also build an FP16 model (GPU / TensorRT).")]
EngineOpt = Annotated[bool, typer.Option("--engine", help="Also build TensorRT engines (needs TensorRT + NVIDIA GPU).")]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        help="INT8 target: auto | cpu (ONNX Runtime) | tensorrt (modelopt) | all (default: recipe's export.target)."
    ),
]
MaxDropOpt = Annotated[
    float | None, typer.Option(help="Accuracy budget per task, in points (default: recipe's export.max_drop).")
]
CalibrationOpt = Annotated[str | None, typer.Option(help="Calibration method: minmax | entropy | percentile.")]
CalibrationSizeOpt = Annotated[
    int | None, typer.Option(help="Calibration images (stratified sample of the training split).")
]
NoGateOpt = Annotated[bool, typer.Option("--no-gate", help="Skip the accuracy-gate search (report the drop only).")]
QatOpt = Annotated[
    bool,
    typer.Option(
        "--qat",
        help="Also run quantization-aware training (modelopt torch) -> int8-qat (CPU), whatever export.qat.mode says.",
    ),
]
Fp16IoOpt = Annotated[
    bool, typer.Option("--fp16-io", help="FP16 model with FP16 inputs/outputs (default: FP32 inputs/outputs).")
]
GateThreadsOpt = Annotated[
    int | None, typer.Option(help="CPU threads for the gate's FP32 vs INT8 timing (default: min(cores, 4)).")
]
AllowMismatchOpt = Annotated[
    bool, typer.Option("--allow-mismatch", help="Ship even if ONNX vs PyTorch verification fails.")
]
BundleOutOpt = Annotated[Path | None, typer.Option(help="Bundle directory (default: <run>/export).")]
DeepstreamOpt = Annotated[
    bool, typer.Option("--deepstream", help="Also write a DeepStream nvinfer config (deepstream/config_infer.txt).")
]


@app.command(epilog="Example: edgetl export runs/quickstart --int8 --max-drop 0.5")
def export(
    run: Annotated[str, typer.Argument(help="Run directory (runs/<name>).")],
    int8: Int8Opt = False,
    fp16: Fp16Opt = False,
    engine: EngineOpt = False,
    target: TargetOpt = None,
    max_drop: MaxDropOpt = None,
    calibration: CalibrationOpt = None,
    calibration_size: CalibrationSizeOpt = None,
    no_gate: NoGateOpt = False,
    qat: QatOpt = False,
    fp16_io: Fp16IoOpt = False,
    threads: GateThreadsOpt = None,
    allow_mismatch: AllowMismatchOpt = False,
    out: BundleOutOpt = None,
    deepstream: DeepstreamOpt = False,
    sign: SignOpt = None,
    quiet: QuietOpt = False,
):
    """Export to ONNX (verified against PyTorch), quantize (INT8 / FP16) and write the deploy bundle."""
    flags = dict(locals())  # ExportOptions.from_flags takes them under their own names
    from edgetl.bundle.pipeline import ExportOptions, export_run

    _in_run(run)
    _print_manifest_summary(export_run(flags.pop("run"), ExportOptions.from_flags(**flags)))


def _print_manifest_summary(bundle: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgetl.bundle.summary import bundle_table

    header, rows = bundle_table(bundle)
    t = Table(title=f"bundle {bundle}")
    for h in header:
        t.add_column(h)
    for row in rows:
        t.add_row(*row)
    Console().print(t)


# --------------------------------------------------------------------------------------------------- bench
SSH = "Remote devices (SSH)"  # the help panel of the remote options
DeviceOpt = Annotated[
    str, typer.Option(help="Device profile name (see `edgetl devices`), or cpu/auto for this machine.")
]
EstimateOpt = Annotated[
    bool | None,
    typer.Option(
        "--estimate/--measure",
        help="Roofline estimate from the device profile instead of measuring (default: estimate when not on the device).",
    ),
]
HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Run on a remote device over SSH: user@addr[:port] (repeatable: several hosts run concurrently).",
        rich_help_panel=SSH,
    ),
]
HostsFileOpt = Annotated[
    Path | None, typer.Option(help="File with one user@addr[:port] per line (# comments).", rich_help_panel=SSH)
]
RemotePythonOpt = Annotated[
    str, typer.Option(help="Python on the device that has edgetl (light install).", rich_help_panel=SSH)
]
RemoteDirOpt = Annotated[
    str,
    typer.Option(
        help="Where the bundle is copied on the device (a job directory inside it, removed afterwards).",
        rich_help_panel=SSH,
    ),
]
IdentityOpt = Annotated[Path | None, typer.Option(help="ssh private key (ssh -i).", rich_help_panel=SSH)]
SshConfigOpt = Annotated[
    Path | None, typer.Option(help="ssh client config file (ssh -F; default ~/.ssh/config).", rich_help_panel=SSH)
]
SshOptionOpt = Annotated[
    list[str] | None, typer.Option(help="Extra ssh option Key=Value (ssh -o; repeatable).", rich_help_panel=SSH)
]
ConnectTimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for an ssh connection.", rich_help_panel=SSH)]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help="Seconds the remote bench may take per host (default: from artifacts, batches and budget).",
        rich_help_panel=SSH,
    ),
]
RemoteBundleOpt = Annotated[
    str | None,
    typer.Option(
        help="Bench a bundle already on the device (e.g. with engines `edgetl build` made there) instead of copying TARGET's; TARGET still supplies the bench data.",
        rich_help_panel=SSH,
    ),
]
KeepRemoteOpt = Annotated[
    bool, typer.Option("--keep-remote", help="Leave the job directory on the device.", rich_help_panel=SSH)
]
ArtifactsOpt = Annotated[
    list[str] | None, typer.Option(help="Only these artifacts (repeatable), e.g. fp32, int8-ort, trt-fp16.")
]
ProviderOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="ONNX Runtime execution providers for ONNX artifacts, in order (repeatable), e.g. TensorrtExecutionProvider, CUDAExecutionProvider."
    ),
]
BatchOpt = Annotated[str, typer.Option(help="Batch sizes for the throughput sweep, comma-separated.")]
BudgetOpt = Annotated[float, typer.Option(help="Timed seconds per measurement.")]
BenchThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads for inference (default: all).")]
BenchDataOpt = Annotated[Path | None, typer.Option(help="bench_data.npz with held-out inputs + labels (bundles only).")]
BenchOutOpt = Annotated[
    Path | None,
    typer.Option(help="Where bench.json/md/png go (default: the run dir; <run>/bench-remote with --host)."),
]


@app.command(
    epilog="Examples: edgetl bench runs/quickstart --device cpu | edgetl bench runs/quickstart --device jetson-orin-nano --estimate | edgetl bench runs/quickstart --host nvidia@orin-nano --host nvidia@orin-nx"
)
def bench(
    target: Annotated[str, typer.Argument(help="Run directory or bundle directory.")],
    device: DeviceOpt = "cpu",
    estimate: EstimateOpt = None,
    host: HostOpt = None,
    hosts_file: HostsFileOpt = None,
    remote_python: RemotePythonOpt = "python3",
    remote_dir: RemoteDirOpt = "~/.cache/edgetl/bench",
    identity: IdentityOpt = None,
    ssh_config: SshConfigOpt = None,
    ssh_option: SshOptionOpt = None,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    timeout: TimeoutOpt = None,
    remote_bundle: RemoteBundleOpt = None,
    keep_remote: KeepRemoteOpt = False,
    artifact: ArtifactsOpt = None,
    provider: ProviderOpt = None,
    batch: BatchOpt = "1,8,32",
    budget: BudgetOpt = 3.0,
    threads: BenchThreadsOpt = None,
    data: BenchDataOpt = None,
    out: BenchOutOpt = None,
    skip_verify: SkipVerifyOpt = False,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
):
    """Latency (p50/p90/p99, throughput) and per-task accuracy of every artifact, measured or estimated."""
    flags = dict(locals())  # bench_command takes them under their own names
    from edgetl.bench.command import bench_command, show_bench

    _in_run(target)
    as_json = flags.pop("as_json")
    code = show_bench(bench_command(**flags, progress=lambda m: _console().print(f"[cyan]bench[/] {m}")), as_json)
    if code:
        raise typer.Exit(code)


# ------------------------------------------------------------------------------------------------- compare
@app.command("bench-merge", epilog="Example: edgetl bench-merge orin/bench.json x86/bench.json --out compare/")
def bench_merge(
    reports: Annotated[list[Path], typer.Argument(help="bench.json files from several devices (or runs).")],
    out: Annotated[Path, typer.Option(help="Directory for compare.json / compare.md / compare.png.")] = Path(
        "bench-compare"
    ),
    as_json: JsonOpt = False,
):
    """Merge bench reports from several devices into one device x artifact comparison (table, JSON, PNG)."""
    from edgetl.bench.merge import load_report, merge_reports, print_comparison, write_comparison

    merged = merge_reports([load_report(p) for p in reports])
    write_comparison(merged, out)
    if as_json:
        typer.echo(json.dumps(merged, indent=2, default=float))
    else:
        print_comparison(merged)
        typer.echo(f"wrote {', '.join(merged['files'].values())}")


# --------------------------------------------------------------------------------------------------- build
EngineEvaluateOpt = Annotated[
    bool | None,
    typer.Option(
        "--evaluate/--no-evaluate",
        help="Score each engine on the source run's test split (default: when the run is on this machine).",
    ),
]


@app.command(epilog="Example: edgetl build runs/quickstart/export --fp16 --int8")
def build(
    bundle: Annotated[str, typer.Argument(help="Bundle directory (or run directory) to add TensorRT engines to.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Also build an FP16 engine (trt-fp16).")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also build an INT8 engine from the modelopt Q/DQ ONNX (trt-int8).")
    ] = False,
    max_batch: Annotated[int, typer.Option(help="Largest batch the engines accept (profile 1..max, opt 1).")] = 32,
    evaluate: EngineEvaluateOpt = None,
    quiet: QuietOpt = False,
):
    """Build TensorRT engines (fp32, + fp16 / int8) for this machine's GPU into a bundle (needs TensorRT)."""
    from edgetl.bench.harness import locate
    from edgetl.compile.bundle import build_bundle_engines
    from edgetl.compile.tensorrt import trt_available
    from edgetl.errors import UnverifiedError

    path, _, _ = locate(bundle)
    if max_batch < 1:
        raise EdgetlError(f"--max-batch {max_batch}: must be >= 1")
    ok, reason = trt_available()
    if not ok:
        raise UnverifiedError(f"edgetl build: {reason}")
    if evaluate is None:
        source = json.loads((path / "manifest.json").read_text()).get("source_run")
        evaluate = bool(source) and Path(source).is_dir()
    built = build_bundle_engines(
        path,
        fp16=fp16,
        int8=int8,
        max_batch=max_batch,
        evaluate=evaluate,
        say=None if quiet else (lambda m: _console().print(f"[cyan]build[/] {m}")),
    )
    typer.echo(f"built {', '.join(built)} into {path}")
    _print_manifest_summary(path)


# ---------------------------------------------------------------------------------------------------- eval
@app.command("eval", epilog="Example: edgetl eval runs/quickstart --artifact int8-ort")
def eval_cmd(
    run: Annotated[str, typer.Argument(help="Run directory.")],
    artifact: Annotated[
        str, typer.Option(help="pytorch (the checkpoint) or an exported artifact (fp32, int8-ort, ...).")
    ] = "pytorch",
    split: Annotated[str, typer.Option(help="test | val | train")] = "test",
    as_json: JsonOpt = False,
):
    """Per-task metrics (accuracy, macro-F1, per-class P/R, confusion matrix; MAE/RMSE) -> eval.json."""
    from edgetl.runs.evaluate import evaluate_run, print_eval

    _in_run(run)
    result = evaluate_run(run, artifact=artifact, split=split)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
    else:
        print_eval(result)


# -------------------------------------------------------------------------------------------------- report
@app.command(epilog="Example: edgetl report runs/ft runs/probe runs/scratch --out reports/transfer")
def report(
    runs: Annotated[
        list[str], typer.Argument(help="Run directories of the same task(s): fine-tuned, linear probe, scratch, ...")
    ],
    out: Annotated[Path, typer.Option(help="Where report.md, report.json and report.png go.")] = Path("report"),
    split: Annotated[str, typer.Option(help="test | val")] = "test",
    as_json: JsonOpt = False,
):
    """Transfer report: gain over scratch, linear probe, multi- vs single-task, distillation, export precision."""
    from edgetl.reports.transfer import transfer_report

    result = transfer_report(runs, out, split=split)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=float))
    else:
        typer.echo(Path(result["files"]["markdown"]).read_text())
        typer.echo(f"wrote {', '.join(result['files'].values())}")


# ------------------------------------------------------------------------------------------------- predict
@app.command(epilog="Example: edgetl predict runs/quickstart shoe.png shirt.png")
def predict(
    bundle: Annotated[
        Path, typer.Argument(help="Bundle directory (with manifest.json), or a run directory (its export/).")
    ],
    inputs: Annotated[
        list[str], typer.Argument(help="Image files, or texts for a text bundle (use - to read lines from stdin).")
    ],
    artifact: Annotated[str | None, typer.Option(help="Artifact to run (default: the bundle's default).")] = None,
    public_key: PublicKeyOpt = None,
    skip_verify: SkipVerifyOpt = False,
    as_json: JsonOpt = False,
    mask_dir: Annotated[
        Path | None,
        typer.Option(
            "--mask-dir",
            "--draw-dir",
            help="Write pictures here: segmentation masks as coloured PNGs (<input>.<task>.png), detections drawn "
            "on their image (<input>.<task>.jpg).",
        ),
    ] = None,
    score_threshold: Annotated[
        float | None, typer.Option(help="Detection: keep boxes above this score (default: the bundle's).")
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="Detection: at most this many boxes per image.")] = None,
):
    """Run a deploy bundle on inputs with the device runtime (no torch needed)."""
    from edgetl.runtime.outputs import predict_inputs, text_line

    items = [line.rstrip("\n") for line in sys.stdin] if inputs == ["-"] else list(inputs)
    settings = {k: v for k, v in (("score_threshold", score_threshold), ("top_k", top_k)) if v is not None}
    rows, kinds = predict_inputs(
        bundle, items, artifact=artifact, public_key=public_key, verify=not skip_verify, mask_dir=mask_dir,
        settings=settings,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(text_line(row, kinds))


# ------------------------------------------------------------------------------------------------- devices
@app.command(epilog="Example: edgetl devices")
def devices(as_json: JsonOpt = False):
    """List device profiles (peak INT8/FP16, bandwidth, memory, DLA, TensorRT) and this machine's match."""
    from rich.console import Console
    from rich.table import Table

    from edgetl.bench.devices import list_device_profiles
    from edgetl.bench.sysinfo import detect_local_device

    profiles = list_device_profiles()
    local = detect_local_device()
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in profiles], indent=2))
        return
    t = Table(title=f"device profiles (this machine: {local})")
    for h in ("name", "device", "kind", "INT8 TOPS", "FP16 TFLOPS", "GB/s", "mem GB", "DLA", "TensorRT"):
        t.add_column(h)
    for p in profiles:
        d = p.model_dump()
        t.add_row(
            p.name + (" *" if p.name == local else ""),
            p.display_name,
            p.kind,
            _fmt(d.get("peak_int8_tops")),
            _fmt(d.get("peak_fp16_tflops")),
            _fmt(d.get("memory_bandwidth_gbs")),
            _fmt(d.get("memory_gb")),
            str(d.get("dla_count", 0)),
            str(d.get("tensorrt") or d.get("tensorrt_versions") or "-"),
        )
    Console().print(t)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)


# ----------------------------------------------------------------------------------------------- backbones
@app.command(epilog="Example: edgetl backbones")
def backbones(as_json: JsonOpt = False):
    """List registered backbones and which have offline weights."""
    from edgetl.models.registry import list_backbones

    rows = [
        {"name": e.name, "family": e.family, "kind": e.kind, "offline_weights": e.offline, "description": e.description}
        for e in list_backbones()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['name']:<22} {r['family']:<12} {r['kind']:<6} {'offline' if r['offline_weights'] else 'online ':<8} {r['description']}"
        )
    typer.echo("also: timm:<any timm model> (online), hf:<any Hugging Face encoder or local dir>")


def _examples_in_short_help() -> None:
    """`edgetl --help` shows each verb's one-line description followed by its example (from the epilog)."""
    for info in app.registered_commands:
        first = (info.callback.__doc__ or "").strip().splitlines()[0]
        example = (info.epilog or "").replace("Examples: ", "").replace("Example: ", "").split(" | ")[0]
        info.short_help = f"{first}  [dim]e.g.[/] [green]{example}[/]" if example else first


_examples_in_short_help()


def main() -> None:
    """Console entry point: run the app; user errors become one line + exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1") if os.environ.get("EDGETL_OFFLINE") == "1" else None
    try:
        rc = app(standalone_mode=False)  # a command's `raise typer.Exit(n)` comes back as the return value here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except EdgetlError as e:
        if _STATE["debug"]:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is intact; resume with --resume", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        import click

        if isinstance(e, click.ClickException):  # usage errors
            e.show()
            sys.exit(e.exit_code)
        if _STATE["debug"]:
            raise
        from edgetl.crash import report_crash

        run_dir = getattr(e, "edgetl_run_dir", None) or _STATE.get("run_dir")
        line, _ = report_crash(e, _command_name(), Path(run_dir) if run_dir else None)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(1)


def _command_name() -> str:
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    return next((a for a in sys.argv[1:] if a in names), "command")


def _in_run(path) -> None:
    """Remember the run or bundle directory a command works on: an internal error's crash log goes there."""
    if path is not None and Path(path).is_dir():
        _STATE["run_dir"] = Path(path)


if __name__ == "__main__":
    main()
