"""`Predictor`: a deploy bundle in, per-task predictions out; what device applications embed.

It reads the manifest, verifies the files it loads, rebuilds the training pre-processing from the manifest
alone and turns raw outputs into labels and scores. numpy + onnxruntime only (tokenizers/pillow when the
input needs them), so it runs where torch does not.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.runtime.artifacts import default_fallback
from edgetl.runtime.backends import Backend, ProviderSpec, create_backend
from edgetl.runtime.manifest import (
    MANIFEST_NAME,
    Artifact,
    ImageInput,
    Manifest,
    Task,
    onnx_external_data,
    resolve_bundle_dir,
    resolve_in_bundle,
    verify_files,
)
from edgetl.runtime.preprocess import ImagePreprocessor, TextEncoder
from edgetl.runtime.tasks import TaskPrediction, get_kind, output_names, task_outputs
from edgetl.runtime.trust import check_bundle, read_trusted_manifest, refuse_unlisted

__all__ = ["Predictor", "TaskPrediction", "default_artifact_name", "external_data_names"]


def default_artifact_name(manifest: Manifest) -> str:
    """The manifest's `default_artifact`, else int8-ort, else fp32."""
    if manifest.default_artifact is not None:
        return manifest.default_artifact
    name = default_fallback(manifest.artifacts)
    if name is not None:
        return name
    raise EdgetlError(
        f"{MANIFEST_NAME}: no default artifact (no 'default_artifact', 'int8-ort' or 'fp32'); "
        f"pick one of: {', '.join(manifest.artifacts)}"
    )


def external_data_names(bundle_dir: str | os.PathLike[str], manifest: Manifest, entry: Artifact) -> list[str]:
    """Bundle-relative names of the external-data files an ONNX artifact loads; each must be listed in
    `files` (edgetl's own check: ONNX Runtime only checks the path stays beside the model)."""
    model = resolve_in_bundle(bundle_dir, entry.file, f"artifacts.{entry.name}.file")
    names = []
    for loc in onnx_external_data(model):
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(entry.file), loc))
        path = resolve_in_bundle(bundle_dir, rel, f"external data of {entry.file}")
        if rel not in manifest.files:
            raise EdgetlError(
                f"{path}: external data of {entry.file} is not listed in {MANIFEST_NAME} 'files', so "
                f"it cannot be verified; refusing to load artifact {entry.name!r}"
            )
        names.append(rel)
    return names


class Predictor:
    """Runs one artifact of a bundle. Build it with `Predictor.load(bundle_dir)`."""

    def __init__(self, manifest: Manifest, backend: Backend, bundle_dir: str | os.PathLike[str], artifact: str):
        self.manifest = manifest
        self.backend = backend
        self.bundle_dir = Path(bundle_dir)
        self.artifact = artifact
        self.tasks: tuple[Task, ...] = manifest.tasks
        spec = manifest.input
        where = f"{self.bundle_dir / manifest.artifacts[artifact].file}"
        model_inputs = set(backend.input_names)
        if isinstance(spec, ImageInput):
            self.input_kind = "image"
            self._image = ImagePreprocessor.from_spec(spec)
            self._text: TextEncoder | None = None
            if model_inputs != {spec.name}:
                raise EdgetlError(
                    f"{where}: model inputs {sorted(model_inputs)} do not match manifest input.name {spec.name!r}"
                )
        else:
            self.input_kind = "text"
            self._text = TextEncoder.from_spec(spec, self.bundle_dir)
            if not model_inputs <= set(spec.names):
                raise EdgetlError(
                    f"{where}: model inputs {sorted(model_inputs)} are not all among manifest input.names "
                    f"{list(spec.names)}"
                )
            self._text_feed = tuple(n for n in spec.names if n in model_inputs)
        missing = [n for n in self.output_names() if n not in backend.output_names]
        if missing:
            raise EdgetlError(
                f"{where}: model has no output {missing[0]!r} (task outputs in the manifest); "
                f"model outputs: {', '.join(backend.output_names)}"
            )

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        bundle_dir: str | os.PathLike[str],
        artifact: str | None = None,
        providers: Sequence[ProviderSpec] | None = None,
        verify: bool = True,
        intra_op_threads: int | None = None,
        public_key: Any = None,
    ) -> Predictor:
        """Load a bundle's artifact (default: manifest's default_artifact, else int8-ort, else fp32).

        With `verify`, the sha256 of every file it loads (model, its ONNX external data, engine manifest,
        tokenizer) is checked against manifest.json first, and external data the manifest does not list is
        refused; so are labels files that differ from the manifest's labels and files it does not list
        (`edgetl.runtime.trust`, the check every entry point shares). With `public_key` (a path, PEM/OpenSSH
        bytes or an Ed25519PublicKey), the manifest must carry a valid signature (`edgetl export --sign`), even
        with `verify=False`. `providers` are ONNX Runtime execution providers (default CPU).
        """
        bundle_dir = resolve_bundle_dir(bundle_dir)  # a run dir means its export/, as in `edgetl bench`
        manifest = read_trusted_manifest(bundle_dir, public_key)
        name = artifact if artifact is not None else default_artifact_name(manifest)
        if name not in manifest.artifacts:
            raise EdgetlError(
                f"{bundle_dir / MANIFEST_NAME}: no artifact {name!r}; available: {', '.join(manifest.artifacts)}"
            )
        entry = manifest.artifacts[name]
        if verify:
            names = [entry.file]
            sidecar = f"{entry.file}.json"  # TensorRT engine manifest
            if sidecar in manifest.files:
                names.append(sidecar)
            if manifest.input.kind == "text":
                names.append(manifest.input.tokenizer)  # type: ignore[union-attr]
            digests = check_bundle(bundle_dir, manifest, names, unlisted=False)
            if entry.format == "onnx":
                verify_files(bundle_dir, manifest, external_data_names(bundle_dir, manifest, entry))
            refuse_unlisted(bundle_dir, manifest)  # after the external-data check, which says more
            if entry.sha256 is not None and digests[entry.file] != entry.sha256:
                raise EdgetlError(
                    f"{bundle_dir / entry.file}: sha256 differs from artifacts.{name}.sha256 in {MANIFEST_NAME}"
                )
        backend = create_backend(entry, bundle_dir, providers, intra_op_threads=intra_op_threads)
        return cls(manifest, backend, bundle_dir, name)

    # ------------------------------------------------------------------------------------ running

    def is_batch(self, x: object) -> bool:
        """Whether `predict(x)` returns a list (a list/tuple of inputs, or a 4-D NHWC array)."""
        if self._text is not None:
            return isinstance(x, (list, tuple))
        return ImagePreprocessor.is_batch(x)

    def preprocess(self, x: object) -> dict[str, np.ndarray]:
        """Model feeds for `x` (always batched): {input name: array}."""
        if self._text is not None:
            encoded = self._text(x)  # type: ignore[arg-type]
            return {n: encoded[n] for n in self._text_feed}
        return {self.manifest.input.name: self._image(x)}  # type: ignore[union-attr]

    def predict_arrays(self, x: object) -> dict[str, np.ndarray]:
        """Raw model outputs for `x`, batched (a single input gives a batch of 1): {output name: array}."""
        return self._run(self.preprocess(x))

    def predict_task_arrays(self, x: object) -> dict[str, np.ndarray]:
        """One array per task, batched: what metrics read (a detector's four outputs joined into [N, K, 6])."""
        return self.task_arrays(self.predict_arrays(x))

    def task_arrays(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return task_outputs(self._output_tasks, outputs)

    def predict(
        self, x: object, *, score_threshold: float | None = None, top_k: int | None = None
    ) -> dict[str, TaskPrediction] | list[dict[str, TaskPrediction]]:
        """{task name: TaskPrediction} for one input; a list of those for a list of inputs. Dense predictions
        (segmentation masks, detection boxes) come back in each input image's own pixels. `score_threshold` and
        `top_k` override the bundle's detection settings for this call."""
        overrides = {k: v for k, v in (("score_threshold", score_threshold), ("top_k", top_k)) if v is not None}
        if self._text is None and self.dense:
            feeds_x, sizes = self._image.with_sizes(x)  # type: ignore[union-attr]
            outputs = self._run({self.manifest.input.name: feeds_x})  # type: ignore[union-attr]
            results = self.postprocess(outputs, sizes, overrides)
        else:
            results = self.postprocess(self.predict_arrays(x), None, overrides)
        return results if self.is_batch(x) else results[0]

    @property
    def _output_tasks(self) -> list[tuple[str, str, str, str | None]]:
        return [(t.name, t.kind, t.output, t.output_format) for t in self.tasks]

    def output_names(self) -> list[str]:
        """The model outputs the manifest's tasks read (a detector's four EfficientNMS-layout outputs)."""
        return output_names(self._output_tasks)

    def task_options(self, task: Task, overrides: dict | None = None) -> dict:
        """A task's decoding settings: the manifest's (detection: display threshold, top-K), the input geometry
        (boxes are mapped back through it), then the call's overrides."""
        opts: dict[str, Any] = dict(task.options)
        if "display_threshold" in opts:  # the graph kept boxes above its NMS threshold; people see these
            opts["score_threshold"] = opts["display_threshold"]
        if "max_detections" in opts:
            opts.setdefault("top_k", opts["max_detections"])
        if isinstance(self.manifest.input, ImageInput):
            opts["image_size"] = self.manifest.input.image_size[0]
            opts["resize"] = self.manifest.input.resize
        opts.update(overrides or {})
        return opts

    @property
    def dense(self) -> bool:
        """Some task predicts per pixel (its predictions are mapped back to the input image's size)."""
        return any(get_kind(t.kind).dense for t in self.tasks)

    def postprocess(
        self, outputs: dict[str, np.ndarray], sizes: list | None = None, overrides: dict | None = None
    ) -> list[dict[str, TaskPrediction]]:
        """Raw batched outputs -> one {task: TaskPrediction} per input; `sizes`: original (h, w) per input."""
        joined = self.task_arrays(outputs)
        per_task = [
            self._task_predictions(t, joined[t.name], sizes, self.task_options(t, overrides)) for t in self.tasks
        ]
        n = len(per_task[0])
        return [{t.name: preds[i] for t, preds in zip(self.tasks, per_task)} for i in range(n)]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        fixed = getattr(self.backend, "batch_size", None)
        if fixed is None or fixed == n:
            return self.backend.run(feeds)
        # The model was exported with a fixed batch size: run in chunks, padding the last one.
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, fixed):
            chunk = {}
            for name, arr in feeds.items():
                part = arr[start : start + fixed]
                if len(part) < fixed:
                    part = np.concatenate([part, np.repeat(part[-1:], fixed - len(part), axis=0)])
                chunk[name] = part
            parts.append(self.backend.run(chunk))
        return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}

    def _task_predictions(
        self, task: Task, out: np.ndarray, sizes: list | None = None, options: dict | None = None
    ) -> list[TaskPrediction]:
        kind = get_kind(task.kind)
        out = np.asarray(out)
        if not kind.dense:
            out = np.asarray(out, dtype=np.float32)
            out = out.reshape(out.shape[0] if out.ndim else 1, -1)
            kind.check_output_width(task.name, out.shape[1], task.labels, MANIFEST_NAME)
        return kind.decode(task.name, out, task.labels, sizes, options)

    # -------------------------------------------------------------------------------- description

    def labels(self, task: str) -> tuple[str, ...]:
        """Label names of one task."""
        for t in self.tasks:
            if t.name == task:
                return t.labels
        raise EdgetlError(f"no task {task!r}; tasks: {', '.join(t.name for t in self.tasks)}")

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.bundle_dir)!r}, artifact={self.artifact!r}, "
            f"tasks={[t.name for t in self.tasks]}, backend={self.backend!r})"
        )
