"""`train(recipe) -> Run`: the training loop.

Deterministic on CPU (seeded, per-epoch data order derived from the seed, deterministic algorithms), resumable
from the last checkpoint (model, optimizer, scaler, RNG, epoch and step), atomic writes throughout.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import ProgressColumn
from rich.text import Text

from edgetl.data import load_splits
from edgetl.data.augment import BatchAugment, batch_seed, flip_targets, uses_hflip
from edgetl.data.examples import DataSplits
from edgetl.data.image_cache import ImageCache
from edgetl.data.mixing import train_order
from edgetl.data.stream import BatchPlan, make_loader, resolve_workers
from edgetl.data.transforms import flip_mask, hflip
from edgetl.errors import EdgetlError
from edgetl.evaluate.metrics import all_task_metrics, summary_score
from edgetl.evaluate.torch_eval import model_inputs
from edgetl.models import MultiTaskModel, build_model
from edgetl.models.preprocess import make_preprocess
from edgetl.recipe import Recipe
from edgetl.runs import checkpoint as ckpt
from edgetl.runs.layout import DEFAULT_RUNS_DIR, Run, new_run_dir, write_json
from edgetl.runtime.artifacts import headline_value
from edgetl.runtime.atomic import atomic_write_text, storage_error
from edgetl.runtime.tasks import get_kind
from edgetl.train.cache import build_cache, cache_key, cache_usable
from edgetl.train.checks import check_model, check_recipe
from edgetl.train.distill import FEATURES, make_projection
from edgetl.train.distributed import Dist, init_from_env, shutdown
from edgetl.train.freezing import apply_freeze, frozen_prefix, lr_factor, make_optimizer, param_groups, set_train_mode
from edgetl.train.loggers import NullLogger, make_logger
from edgetl.train.losses import feature_loss, kd_loss, task_loss
from edgetl.train.progress_lines import PlainProgress, wants_plain_lines
from edgetl.train.summary import print_summary, resolved_recipe_yaml, run_summary
from edgetl.train.teacher_cache import cached_views, teacher_outputs
from edgetl.train.teacher_cache import pick as pick_teacher
from edgetl.versions import library_versions

log = logging.getLogger("edgetl")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise EdgetlError("train.device=cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def setup_determinism(recipe: Recipe) -> None:
    torch.manual_seed(recipe.train.seed)
    if recipe.train.num_threads:
        torch.set_num_threads(recipe.train.num_threads)
    if recipe.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


class TrainForward(torch.nn.Module):
    """The training forward as one module, so DistributedDataParallel can wrap it: images, token dicts, or a
    frozen prefix's cached output (`cached`, after `k` stages) -> (task outputs, pooled features)."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, x=None, cached=None, k: int = 0, text: dict | None = None):
        bb = self.model.backbone
        if cached is not None:
            feats = cached if k >= bb.num_stages else bb.forward_suffix(cached, k)
        elif text is not None:
            feats = bb(**text)
        elif self.model.takes_maps:  # dense heads read every stage's map; global heads their pooled vector
            maps = bb.forward_maps(x)
            feats = bb.pool_maps(maps)
            return self.model.forward_heads(feats, maps), feats
        else:
            feats = bb(x)
        return self.model.forward_heads(feats), feats


@dataclass
class TrainState:
    epoch: int = 0  # next epoch to run
    step_in_epoch: int = 0  # batches of `epoch` already done (mid-epoch resume)
    global_step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list = field(default_factory=list)
    epoch_loss_sum: float = 0.0  # running train loss of the current epoch (a mid-epoch resume reports it whole)
    epoch_seen: int = 0
    examples_seen: int = 0  # training rows through the optimizer, all ranks (the run's budget, with global_step)


class Trainer:
    """Holds the pieces of one run; `fit()` runs the epochs. Use `train()` unless you need the parts."""

    def __init__(self, recipe: Recipe, run: Run, splits: DataSplits, progress: bool = True, dist: Dist | None = None):
        self.recipe, self.run, self.splits = recipe, run, splits
        self.dist = dist or Dist()
        self.device = resolve_device(recipe.train.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.model: MultiTaskModel = build_model(recipe, splits.labels).to(self.device)
        check_model(recipe, self.model)
        self.prep = make_preprocess(recipe, self.model.backbone)
        self.kinds = {t.name: t.kind for t in recipe.tasks}
        self.specs = {t.name: t for t in recipe.tasks}
        self.weights = {t.name: t.weight for t in recipe.tasks}
        # tasks with a target per pixel: augmentation moves their masks with the image
        self.dense_tasks = [t.name for t in recipe.tasks if get_kind(t.kind).dense]
        self.geometry = {t.name: get_kind(t.kind).target_geometry or "mask" for t in recipe.tasks}
        self.amp = recipe.train.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.show_progress = progress
        self.progress_every_s = 30.0  # plain progress lines (stdout not a terminal): at most this far apart
        first = recipe.tasks[0].name
        self.augment = BatchAugment.make(recipe, len(splits.labels.get(first) or []) or None)
        self.k = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.cache: dict[str, torch.Tensor] = {}
        self.teacher = None
        self.teacher_augment: BatchAugment | None = None  # the recipe's random augmentations at the teacher's size
        self.teacher_views: dict[str, dict[str, torch.Tensor]] | None = None  # teacher_cache.teacher_outputs
        self.projection: torch.nn.Module | None = None  # feature distillation only; never exported
        self.stats = {"cache_build_s": 0.0}
        self.aug_gen: torch.Generator | None = None
        self._resume_aug: torch.Generator | None = None  # augmentation RNG of a mid-epoch checkpoint
        self.logger = NullLogger()
        self.loaders: dict = {}  # split -> (DataLoader, BatchPlan), image files only
        self.image_caches: dict[str, ImageCache] = {}  # data.cache: ram | disk
        self.bad_images: dict[str, str] = {}  # path -> why it could not be read (skipped, listed in the run dir)
        self.forward_module = TrainForward(self.model)
        self.train_forward = self.forward_module  # DistributedDataParallel(forward_module) under torchrun

    # ------------------------------------------------------------------------------------ freezing + cache
    def set_freeze(self, k: int, progress=None) -> None:
        if k == self.k:
            return
        apply_freeze(self.model.backbone, k)
        old = self.optimizer
        groups = param_groups(self.model, self.recipe.train, k)
        if self.feature_distill:
            if self.projection is None:
                self.projection = make_projection(
                    self.model.backbone.feature_dim, self.teacher.feature_dim, self.recipe.train.seed
                ).to(self.device)
            lr = self.recipe.train.head_lr or self.recipe.train.lr
            groups.append(
                {
                    "params": list(self.projection.parameters()),
                    "lr": lr,
                    "name": "distill.projection",
                    "lr_scale": lr / self.recipe.train.lr,
                }
            )
        self.optimizer = make_optimizer(groups, self.recipe.train)
        if old is not None:  # keep moment estimates of parameters that were already training
            for p, st in old.state.items():
                if p.requires_grad:
                    self.optimizer.state[p] = st
        for g in self.optimizer.param_groups:
            g["base_lr"] = g["lr"]
        self.k = k
        self.cache = {}
        if cache_usable(self.recipe, self.model, k):
            t0 = time.perf_counter()
            # under torchrun the cache is built once, by rank 0, on disk; the other ranks map the same file
            mode = "disk" if self.dist.enabled else self.recipe.train.feature_cache
            for turn in (0, 1) if self.dist.enabled else (None,):
                if turn is not None and (turn == 0) != self.dist.is_main:
                    self.dist.barrier()
                    continue
                for split in ("train", "val"):
                    ex = getattr(self.splits, split)
                    self.cache[split] = build_cache(
                        self.model,
                        self.prep,
                        ex,
                        k,
                        batch_size=max(self.recipe.train.batch_size, 64),
                        device=self.device,
                        mode=mode,
                        cache_dir=self.run.dir / "cache",
                        key=cache_key(self.recipe, k, ex, split, self.model, self.prep),
                        progress=progress if self.dist.is_main else None,
                    )
                if turn is not None:
                    self.dist.barrier()
            self.stats["cache_build_s"] += time.perf_counter() - t0
        if self.dist.enabled:  # DDP registers the parameters that train now: rebuild it when that set changes
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_forward = DistributedDataParallel(
                self.forward_module, device_ids=ids, find_unused_parameters=False
            )

    @property
    def feature_distill(self) -> bool:
        return self.teacher is not None and self.recipe.distill.feature != "none"

    def forward_rows(
        self,
        split: str,
        idx: np.ndarray,
        augment: bool = False,
        flip: torch.Tensor | None = None,
        with_features: bool = False,
        raw: torch.Tensor | None = None,
        aug: tuple[int, dict] | None = None,
    ):
        """Model outputs for rows `idx` of a split, through the feature cache when there is one.

        `flip`: the hflip draw for these rows (augmentation); `with_features`: also return pooled features;
        `raw`: these rows' uint8 images already read by a loader (`batches`), pre-processed on the device;
        `aug`: (seed, out) for the recipe's other augmentation steps; mixup/cutmix put soft labels in out["soft"].
        """
        fwd = self.train_forward if augment else self.forward_module  # evaluation never syncs gradients
        if split in self.cache:
            h = self.cache[split][torch.from_numpy(idx)].to(self.device)
            y, feats = fwd(cached=h, k=self.k)
        else:
            ex = getattr(self.splits, split)
            if augment and aug is not None and self.augment is not None:
                x = self.augmented_inputs(ex, idx, raw, *aug)
            elif raw is not None:
                x = self.prep(raw.to(self.device, non_blocking=True))
            else:
                x = model_inputs(self.prep, ex, idx, self.device)
            if augment and uses_hflip(self.recipe.data.augment) and not isinstance(x, dict):
                if flip is None and self.dense_tasks:
                    flip = flip_mask(len(idx), self.aug_gen)
                x = hflip(x, self.aug_gen, flip=flip)
            if augment and aug is not None and self.dense_tasks:
                aug[1]["dense"] = self.moved_masks(ex, idx, aug[1].get("dense"), flip)
            if augment and aug is not None and self.augment is not None and self.augment.mix is not None:
                (name,) = self.kinds
                labels = torch.from_numpy(ex.targets[name][idx]).to(self.device)
                if (labels < 0).any():
                    raise EdgetlError(f"data.augment: mixup/cutmix need a label on every training row (task {name!r})")
                aug[1]["labels"] = labels
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(aug[0] + 1)
                    x, aug[1]["soft"] = self.augment.mixed(x, labels)
            y, feats = fwd(text=x) if isinstance(x, dict) else fwd(x)
        return (y, feats) if with_features else y

    def augmented_inputs(self, ex, idx, raw, seed: int, kept: dict) -> torch.Tensor:
        """uint8 images on the device -> the recipe's pixel augmentations (one draw per example, from `seed`)
        -> pre-processed batch. Mixing happens later, on the normalised batch."""
        if raw is not None:
            ims = list(raw.to(self.device, non_blocking=True))
        elif ex.images is not None:
            ims = list(torch.from_numpy(np.ascontiguousarray(ex.images[idx])).to(self.device))
        else:
            ims = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in ex.inputs(idx)]
        if self.teacher is not None:
            kept["images"] = ims  # the teacher repeats this step's draws on them (`teacher_view`)
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG: fork it, seed it
            torch.manual_seed(seed)
            if self.dense_tasks:
                ims, kept["dense"] = self.augment.images_and_masks(ims, self.masks_of(ex, idx), self.geometry)
            else:
                ims = self.augment.images(ims)
        return self.prep.from_device_images(ims, self.device)

    def masks_of(self, ex, idx) -> dict[str, torch.Tensor]:
        """The dense tasks' targets of rows `idx` on the training device: masks uint8 [N, H, W], boxes [N, M, 5]."""
        return {n: torch.from_numpy(np.ascontiguousarray(ex.targets[n][idx])).to(self.device) for n in self.dense_tasks}

    def moved_masks(self, ex, idx, masks: dict | None, flip: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The masks of an augmented batch: those the pixel steps moved (or the rows' own), flipped like the images."""
        masks = masks if masks is not None else self.masks_of(ex, idx)
        if flip is None or not flip.any():
            return masks
        f = flip.to(self.device)[:, None, None]
        width = self.recipe.input.image_size
        return {n: torch.where(f, flip_targets(m, self.geometry[n], width), m) for n, m in masks.items()}

    def batches(self, split: str, plan: list[np.ndarray]):
        """(rows, uint8 images or None) per planned batch. Image files are read ahead by DataLoader workers and
        unreadable ones left out (recorded in `bad_images`); in-memory data and cached features give None
        (`forward_rows` reads those rows itself)."""
        ex = getattr(self.splits, split)
        if ex.files is None or split in self.cache:
            for idx in plan:
                yield idx, None
            return
        mode = self.recipe.data.cache
        if mode != "none" and split not in self.image_caches:
            self.image_caches[split] = ImageCache(ex.files, mode)
        cache = self.image_caches.get(split)
        if cache is not None and cache.complete:  # every image decoded once already: no workers, no decoding
            for idx in plan:
                keep, x, bad = cache.batch(idx)
                self._note_bad(bad)
                yield keep, torch.from_numpy(x)
            return
        if split not in self.loaders:
            workers = resolve_workers(self.recipe.data.workers)
            loader_plan = BatchPlan()
            self.loaders[split] = (make_loader(ex.files, loader_plan, workers, self.device.type == "cuda"), loader_plan)
        loader, loader_plan = self.loaders[split]
        loader_plan.batches = plan
        for idx, batch in zip(plan, loader):
            self._note_bad(batch["bad"])
            keep = idx[batch["keep"].numpy()]
            if cache is not None:
                at = batch["bad_at"].numpy()
                cache.put(keep, batch["x"].numpy(), [(idx[j], *pw) for j, pw in zip(at, batch["bad"])])
            yield keep, batch["x"]

    def _note_bad(self, bad: list[tuple[str, str]]) -> None:
        for path, why in bad:
            if path not in self.bad_images:
                log.warning("skipped unreadable image %s (%s)", path, why)
            self.bad_images[path] = why

    def record_bad_images(self, epoch: int, before: int) -> None:
        """End of epoch: one summary line and `bad_images.txt` in the run dir, when any image was skipped."""
        bad = self.bad_images
        if self.dist.enabled:  # each rank read its own share
            import torch.distributed as tdist

            parts: list = [None] * self.dist.world
            tdist.all_gather_object(parts, bad)
            bad = {k: v for p in parts for k, v in p.items()}
            self.bad_images = bad
        if len(bad) > before and self.dist.is_main:
            log.warning(
                "epoch %d: %d unreadable image(s) skipped so far; listed in %s",
                epoch + 1,
                len(bad),
                self.run.dir / "bad_images.txt",
            )
            atomic_write_text(self.run.dir / "bad_images.txt", "".join(f"{p}\t{w}\n" for p, w in sorted(bad.items())))

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "val", full: bool = False) -> tuple[dict, float]:
        self.model.eval()
        ex = getattr(self.splits, split)
        bs = max(self.recipe.train.batch_size, 128)
        outs: dict[str, list] = {}
        loss_sum, n = 0.0, 0
        mine = self.dist.shard(np.arange(len(ex)))  # under torchrun each rank scores a share; results gathered
        scored = []  # rows actually scored (an unreadable image is left out)
        for idx, raw in self.batches(split, [mine[s : s + bs] for s in range(0, len(mine), bs)]):
            if len(idx) == 0:
                continue
            with torch.autocast("cuda", enabled=self.amp):
                y = self.forward_rows(split, idx, raw=raw)
            loss = self.batch_loss(y, ex, idx)[0]
            loss_sum += float(loss) * len(idx)
            n += len(idx)
            scored.append(idx)
            for k, v in self.model.eval_outputs(y).items():
                outs.setdefault(k, []).append(v.float().cpu().numpy())
        rows = np.concatenate(scored) if scored else np.zeros(0, dtype=np.int64)
        outputs = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in outs.items()}
        if self.dist.enabled:
            outputs, rows = self.dist.gather_rows(outputs, rows)
            loss_sum, n = self.dist.all_reduce_mean(loss_sum) * self.dist.world, len(rows)
        targets = ex.targets if len(rows) == len(ex) else {k: v[rows] for k, v in ex.targets.items()}
        metrics = all_task_metrics(outputs, targets, self.kinds, self.splits.labels, full)
        return metrics, loss_sum / max(n, 1)

    def evaluate_best(self, split: str = "test") -> dict | None:
        """The best checkpoint scored on `split` once training is over (None when the split has no rows), so a
        run ends with its held-out figure beside the validation score it was selected on. Every rank joins."""
        best = self.run.checkpoint("best")
        if not len(getattr(self.splits, split)):
            return None
        self.dist.barrier()  # rank 0 wrote best.safetensors
        if not best.is_file():
            return None
        ckpt.load_model(self.model, best)
        metrics, loss = self.evaluate(split)
        self.loaders.pop(split, None)  # image files: its loader's worker processes end here
        return {
            "split": split,
            "loss": loss,
            "headline": {t: headline_value(m, self.kinds[t]) for t, m in metrics.items()},
        }

    def batch_loss(
        self, y: dict[str, torch.Tensor], ex, idx, teacher: dict | None = None, feats=None, soft=None, dense=None
    ):
        """`dense`: the augmented masks of dense tasks (else the rows' own targets)."""
        # 0 * outputs: a graph even when no row of the batch carries any label (every task masked out)
        total = sum(v.float().sum() for v in y.values()) * 0.0
        parts = {}
        d = self.recipe.distill
        if teacher is not None and feats is not None and self.projection is not None and FEATURES in teacher:
            fl = feature_loss(d.feature, self.projection(feats), teacher[FEATURES])
            parts["feature_kd"] = float(fl.detach())
            total = total + d.feature_weight * fl
        for name, kind in self.kinds.items():
            if dense is not None and name in dense:
                target = dense[name]
            else:
                target = torch.from_numpy(np.ascontiguousarray(ex.targets[name][idx])).to(self.device)
            if soft is not None:  # mixup / cutmix: the batch's mixed labels (one classification task)
                loss = torch.nn.functional.cross_entropy(
                    y[name].float(), soft.float(), label_smoothing=self.recipe.train.label_smoothing
                )
            else:
                loss = task_loss(kind, y[name], target, self.recipe.train.label_smoothing, self.specs[name])
            if teacher is not None and name in teacher:
                kd = kd_loss(kind, y[name], teacher[name], d.temperature)
                parts[f"{name}/kd"] = float(kd.detach())
                loss = kd if loss is None else (1 - d.alpha) * loss + d.alpha * kd
            if loss is None:
                continue
            parts[name] = float(loss.detach())
            total = total + self.weights[name] * loss
        return total, parts

    # ------------------------------------------------------------------------------------------ checkpoints
    @property
    def state_path(self) -> Path:
        return self.run.checkpoints / "last.state.safetensors"

    def save(self, state: TrainState, *, best: bool) -> None:
        """best, then last, then the training state. The state file holds its own copy of every weight (model and
        training-only modules) and is the commit point of a resume: a kill between any two writes leaves the
        last commit whole, and best.safetensors never lags behind the best score the state records."""
        bad = next(
            (n for n, p in self.model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()),
            None,
        )
        if bad is not None:
            last = self.run.checkpoint("last")
            where = (
                f"epoch {state.epoch + 1} step {state.step_in_epoch}"
                if state.step_in_epoch
                else f"the end of epoch {state.epoch}"
            )
            raise EdgetlError(
                f"weights became non-finite ({bad}) by {where} (global step {state.global_step}): "
                f"training stopped; last good checkpoint: {last if last.is_file() else 'none yet'} "
                "(lower train.lr?)"
            )
        if not self.dist.is_main:  # only rank 0 writes the run dir
            return
        meta = {"epoch": state.epoch, "global_step": state.global_step, "recipe": self.recipe.name}
        if best:
            ckpt.save_model(self.model, self.run.checkpoint("best"), meta)
        if self.projection is not None:  # training-only module: kept beside the checkpoint for resume
            ckpt.save_model(self.projection, self.run.checkpoints / "last.distill.safetensors", meta)
        ckpt.save_model(self.model, self.run.checkpoint("last"), meta)
        ckpt.save_training_state(
            self.state_path,
            self.optimizer,
            self.scaler,
            {**state.__dict__, "k": self.k},
            model=self.model,
            modules={"distill": self.projection},
            generators={"aug": self.aug_gen},
        )

    def restore(self) -> TrainState:
        """Model, frozen stages (optimizer groups + feature cache), optimizer, scaler, RNG and counters of the
        last committed checkpoint (last.state.safetensors)."""
        st_path = self.state_path
        saved = ckpt.read_training_meta(st_path)
        try:  # weights first: the feature cache of the frozen prefix is computed from them
            ckpt.load_training_state(st_path, None, model=self.model)
            own_weights = True
        except EdgetlError as e:
            if "holds no model weights" not in str(e):
                raise
            ckpt.load_model(self.model, self.run.checkpoint("last"))  # state file of an older edgetl
            own_weights = False
        self.set_freeze(int(saved["k"]))  # the optimizer needs the saved groups before loading its state
        if self.projection is not None and not own_weights:
            ckpt.load_model(self.projection, self.run.checkpoints / "last.distill.safetensors")
        self._resume_aug = torch.Generator()
        info = ckpt.load_training_state(
            st_path,
            self.optimizer,
            self.scaler,
            modules={"distill": self.projection if own_weights else None},
            generators={"aug": self._resume_aug},
        )
        info.pop("k", None)
        known = TrainState.__dataclass_fields__
        return TrainState(**{k: v for k, v in info.items() if k in known})

    # ---------------------------------------------------------------------------------------------- fit
    def fit(self, state: TrainState | None = None, stop_after_steps: int | None = None) -> TrainState:
        r = self.recipe.train
        state = state or TrainState()
        n = len(self.splits.train)
        steps_per_epoch = math.ceil(n / r.batch_size)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            InfoColumn(),
            TimeElapsedColumn(),
        ]
        # a log file gets plain lines (PlainProgress) instead of a bar that would only show once it stops
        plain = (
            PlainProgress(r.epochs, steps_per_epoch, every_s=self.progress_every_s)
            if self.show_progress and wants_plain_lines()
            else None
        )
        with Progress(*columns, disable=not self.show_progress or plain is not None, transient=False) as progress:
            views = cached_views(self.recipe.data.augment, self.recipe.input.kind)
            if self.teacher is not None and self.teacher_views is None and views is not None:
                self.teacher_views = teacher_outputs(
                    self.teacher,
                    self.splits.train,
                    views,
                    features=self.recipe.distill.feature != "none",
                    cache_dir=self.run.dir / "cache" if self.dist.is_main else None,
                    shared_dir=self.teacher.cache_dir if self.dist.is_main else None,
                    progress=progress,
                )
            for epoch in range(state.epoch, r.epochs):
                self.set_freeze(frozen_prefix(r.freeze, self.model.backbone.num_stages, epoch), progress)
                set_train_mode(self.model, self.k, r.freeze.freeze_bn)
                self.aug_gen = torch.Generator().manual_seed(r.seed * 100_003 + epoch)
                if self._resume_aug is not None:  # mid-epoch resume: the flips continue where they stopped
                    if state.step_in_epoch > 0:
                        self.aug_gen = self._resume_aug
                    self._resume_aug = None
                order = train_order(self.recipe, self.splits.train, epoch)  # == epoch_order() for one dataset
                task = progress.add_task(
                    f"epoch {epoch + 1}/{r.epochs}", total=steps_per_epoch, completed=state.step_in_epoch, info=""
                )
                t0 = time.perf_counter()
                if state.step_in_epoch == 0:
                    state.epoch_loss_sum, state.epoch_seen = 0.0, 0
                bad_before = len(self.bad_images)
                if plain is not None:
                    plain.start_epoch(epoch, state.step_in_epoch)
                steps = range(state.step_in_epoch, steps_per_epoch)
                plan = [self.dist.shard(order[s * r.batch_size : (s + 1) * r.batch_size]) for s in steps]
                for step, (idx, raw) in zip(steps, self.batches("train", plan)):
                    if len(idx) == 0:  # every image of this batch was unreadable (recorded): nothing to learn
                        state.global_step += 1
                        state.step_in_epoch = step + 1
                        progress.update(task, advance=1)
                        continue
                    for g in self.optimizer.param_groups:
                        g["lr"] = g["base_lr"] * lr_factor(r, epoch + step / steps_per_epoch)
                    flip = (
                        flip_mask(len(idx), self.aug_gen)
                        if uses_hflip(self.recipe.data.augment) and "train" not in self.cache
                        else None
                    )
                    aug = (batch_seed(r.seed, epoch, step, self.dist.rank), {})
                    with torch.autocast("cuda", enabled=self.amp):
                        y, feats = self.forward_rows(
                            "train", idx, augment=True, flip=flip, with_features=True, raw=raw, aug=aug
                        )
                        teacher = self.teacher_batch(idx, flip, aug)
                        loss, _ = self.batch_loss(
                            y,
                            self.splits.train,
                            idx,
                            teacher,
                            feats,
                            soft=aug[1].get("soft"),
                            dense=aug[1].get("dense"),
                        )
                    if not torch.isfinite(loss):
                        last = self.run.checkpoint("last")
                        raise EdgetlError(
                            f"loss is {float(loss.detach())} at epoch {epoch + 1} step {step + 1}: training stopped; "
                            f"last good checkpoint: {last if last.is_file() else 'none yet'} (lower train.lr?)"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(loss).backward()
                    if self.dist.enabled and self.projection is not None:  # outside the DDP module: sync by hand
                        self.dist.average_gradients(self.projection.parameters())
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    state.global_step += 1
                    state.step_in_epoch = step + 1
                    state.examples_seen += min(r.batch_size, len(order) - step * r.batch_size)  # every rank's rows
                    state.epoch_loss_sum += float(loss.detach()) * len(idx)
                    state.epoch_seen += len(idx)
                    progress.update(task, advance=1, info=f"loss {state.epoch_loss_sum / state.epoch_seen:.4f}")
                    if plain is not None:
                        plain.step(step + 1, len(idx) * self.dist.world, state.epoch_loss_sum / state.epoch_seen)
                    if (
                        r.checkpoint_every_steps
                        and state.global_step % r.checkpoint_every_steps == 0
                        and state.step_in_epoch < steps_per_epoch
                    ):
                        self.save(state, best=False)
                    if stop_after_steps is not None and state.global_step >= stop_after_steps:
                        return state
                train_s = time.perf_counter() - t0
                metrics, val_loss = self.evaluate("val")
                self.record_bad_images(epoch, bad_before)
                score = -val_loss if r.select_metric == "loss" else summary_score(metrics, self.kinds, r.select_metric)
                is_best = score > state.best_score
                if is_best:
                    state.best_score, state.best_epoch = score, epoch
                train_loss = self.dist.all_reduce_mean(state.epoch_loss_sum / max(state.epoch_seen, 1))
                row = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "score": score,
                    "lr": [g["lr"] for g in self.optimizer.param_groups],
                    "frozen_stages": self.k,
                    "epoch_seconds": train_s,
                    "cached": bool(self.cache),
                    "skipped_images": len(self.bad_images),
                    "val": metrics,
                }
                state.history.append(row)
                state.epoch, state.step_in_epoch = epoch + 1, 0
                if self.dist.is_main:
                    write_json_lines(self.run.dir / "metrics.jsonl", state.history)
                    self.logger.log_epoch(row)
                self.save(state, best=is_best)
                progress.update(task, info=f"loss {row['train_loss']:.4f} val {_short(metrics)}")
                if plain is not None:
                    plain.end_epoch(row, _short(metrics))
        return state

    def set_teacher(self, teacher) -> None:
        """A distillation teacher, and the recipe's random augmentations rebuilt at its input size (so that
        `teacher_batch` repeats each step's draws there). CutMix draws its box in pixels: with a teacher of
        another input size the box would differ, so that combination is refused."""
        self.teacher = teacher
        self.teacher_augment = None
        if self.augment is None or getattr(teacher.prep, "image_size", None) is None:
            return
        t_size, s_size = int(teacher.prep.image_size[0]), int(self.recipe.input.image_size)
        from edgetl.data.augment import steps_of

        if t_size != s_size and any(st.name == "cutmix" for st in steps_of(self.recipe.data.augment)):
            raise EdgetlError(
                f"data.augment: cutmix with distill.teacher {teacher.source} at {t_size} px and a student at "
                f"{s_size} px: the teacher would see another box; use mixup, or a teacher at {s_size} px"
            )
        first = self.recipe.tasks[0].name
        self.teacher_augment = BatchAugment.make(self.recipe, len(self.splits.labels.get(first) or []) or None, t_size)

    def teacher_batch(self, idx, flip=None, aug: tuple[int, dict] | None = None):
        """The teacher's outputs for the student's batch: looked up in the per-view cache (augment none or
        hflip), or computed online on the same augmentation draw as the student (`aug`: the step's seed and
        what `forward_rows` kept of the batch: the uint8 images before augmentation, the labels)."""
        if self.teacher is None:
            return None
        if self.teacher_views is not None:
            return pick_teacher(self.teacher_views, idx, flip, self.device)
        if aug is not None and "images" in aug[1] and self.teacher_augment is not None:
            return self.teacher.outputs_inputs(self.teacher_view(*aug, flip), self.device)
        return self.teacher.outputs_rows(self.splits.train, idx, self.device, flip=flip)

    def teacher_view(self, seed: int, kept: dict, flip=None) -> torch.Tensor:
        """The student's augmented view, drawn again at the teacher's size: pixel steps with the same seed, the
        same flips, the same mixing (same lambda and pairing)."""
        t = self.teacher
        dev = t.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ims = self.teacher_augment.images([a.to(dev) for a in kept["images"]])
        x = t.prep.from_device_images(ims, dev)
        if flip is not None:
            x = hflip(x, flip=flip.to(x.device))
        if self.teacher_augment.mix is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 1)
                x, _ = self.teacher_augment.mixed(x, kept["labels"].to(x.device))
        return x


def _best_val(state: TrainState) -> dict | None:
    """The headline validation figure per task at the best epoch (what `best_score` was selected on)."""
    row = next((h for h in state.history if h["epoch"] == state.best_epoch + 1), None)
    return {t: headline_value(m) for t, m in row["val"].items()} if row else None


def _short(metrics: dict) -> str:
    return " ".join(f"{t}={headline_value(m) or 0:.3f}" for t, m in metrics.items())


class InfoColumn(ProgressColumn):
    """The progress bar's free-text column (running loss, metrics). Tasks that carry no `info` field (feature
    cache, teacher outputs) show nothing instead of raising KeyError inside rich's refresh."""

    def render(self, task) -> Text:
        return Text(str(task.fields.get("info", "")))


def write_json_lines(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole file atomically: a kill never leaves a torn or duplicated epoch line."""
    import json

    from edgetl.runtime.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, default=float) + "\n" for r in rows))


def train(
    recipe: Recipe,
    *,
    name: str | None = None,
    runs_dir: Path = DEFAULT_RUNS_DIR,
    resume: Run | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
    logger: str = "none",
    exist_ok: bool = False,
    summary: bool | None = None,
    progress_every_s: float = 30.0,
) -> Run:
    """Train a recipe into a new run dir (or continue `resume`); returns the Run.

    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 alone creates and writes the run dir.
    `exist_ok`: reuse runs/<name> (an earlier run there is replaced) instead of making runs/<name>-N.
    `summary`: print the start-of-run summary (default: when `progress`); run.json gets it either way.
    `progress_every_s`: with `progress` and stdout not a terminal, a plain progress line at least this often
    (and every 10% of an epoch).
    """
    if resume is not None:  # the run's own recipe, whatever was passed (the Run reads recipe.yaml once)
        recipe = resume.recipe()
    device = recipe.train.device
    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dd = init_from_env("cuda" if wants_cuda else "cpu")
    teacher_run = None  # a distillation teacher run, opened and checked once (on a resume: when it is built)
    if resume is not None:
        run = resume
        # killed before splits.json was written: the split is a pure function of the recipe, rebuild it
        split_def = run.splits() if (run.dir / "splits.json").is_file() else None
        if dd.is_main:
            _remove_stale_temp_files(run)
    else:
        teacher_run = check_recipe(recipe)  # one-line errors before anything is written
        split_def = None
    run = resume  # a new run's dir is made once its data loaded: a train that fails validation leaves none
    started = False  # training began: a failure from here on is recorded in run.json, not cleaned away
    try:
        setup_determinism(recipe)
        splits = load_splits(
            recipe, split_def["indices"] if split_def else None, split_def.get("unlabeled") if split_def else None
        )
        if resume is None:
            run_dir = None
            if dd.is_main:
                try:
                    run_dir = new_run_dir(name or recipe.name, Path(runs_dir), exist_ok=exist_ok)
                except OSError as e:  # read-only or full file system: one line
                    raise storage_error(e, Path(runs_dir) / (name or recipe.name)) from None
            run = Run(Path(dd.broadcast(str(run_dir) if run_dir else None)))
        if split_def is None and dd.is_main:
            write_json(run.dir / "splits.json", {**splits.info, "labels": splits.labels})
            atomic_write_text(run.dir / "recipe.yaml", resolved_recipe_yaml(recipe, splits.info))
        if dd.is_main:
            run.checkpoints.mkdir(exist_ok=True)
        dd.barrier()
        trainer = Trainer(recipe, run, splits, progress=progress and dd.is_main, dist=dd)
        trainer.progress_every_s = progress_every_s
        if recipe.distill is not None:
            from edgetl.train.distill import Teacher

            trainer.set_teacher(Teacher.from_spec(recipe, splits, trainer.device, run=teacher_run))
        state = None
        if resume is not None and trainer.state_path.is_file():
            state = trainer.restore()
            if dd.is_main:
                run.write_info(resumed_from_step=state.global_step, resumes=int(run.info().get("resumes", 0)) + 1)
        if dd.is_main:
            started = True
            start = start_summary(trainer, state)
            if progress if summary is None else summary:
                print_summary(start)
            run.write_info(
                status="running",
                recipe=recipe.name,
                backbone=recipe.backbone.name,
                started_utc=_now(),
                versions=library_versions(),
                world_size=dd.world,
                summary=start,
            )
        t0 = time.perf_counter()
        trainer.logger = make_logger(logger if dd.is_main else "none", run.dir)
        state = trainer.fit(state, stop_after_steps=stop_after_steps)
        trainer.loaders.clear()  # image-file loaders: their persistent worker processes end here
        if type(trainer.logger) is not NullLogger:
            full, _ = trainer.evaluate("val", full=True)
            for task, m in full.items():
                if "confusion_matrix" in m:
                    trainer.logger.log_confusion(
                        task, np.array(m["confusion_matrix"]), splits.labels[task], state.epoch
                    )
        trainer.logger.close()
        done = state.epoch >= recipe.train.epochs
        test = trainer.evaluate_best("test") if done else None
        dd.barrier()
        if not dd.is_main:
            shutdown()
            return run
        run.write_info(
            status="completed" if done else "stopped",
            best_epoch=state.best_epoch + 1,
            best_score=state.best_score,
            epochs_done=state.epoch,
            optimizer_steps=state.global_step,  # the budget `edgetl report` matches distilled runs' controls by
            examples_seen=state.examples_seen,
            best_val=_best_val(state),
            test=test,
            train_seconds=time.perf_counter() - t0,
            cache_build_seconds=trainer.stats["cache_build_s"],
            finished_utc=_now(),
        )
        if dd.enabled:
            shutdown()
        return run
    except BaseException as exc:
        if dd.is_main and run is not None:
            _record_failure(run, exc, new_run=resume is None and not started)
        raise


def _record_failure(run: Run, exc: BaseException, new_run: bool) -> None:
    """A new run that failed before training (bad data, bad recipe) leaves nothing behind; a run that was
    training says so in run.json: "interrupted" (resumable) or "failed" with the one-line reason."""
    if new_run and not run.checkpoint("last").is_file():
        shutil.rmtree(run.dir, ignore_errors=True)
        return
    try:
        exc.edgetl_run_dir = run.dir  # the CLI writes an internal error's crash log beside run.json
    except AttributeError:
        pass
    interrupted = isinstance(exc, KeyboardInterrupt)
    reason = " ".join(str(exc).split()) or type(exc).__name__
    try:
        run.write_info(
            status="interrupted" if interrupted else "failed",
            finished_utc=_now(),
            error=None if interrupted else f"{type(exc).__name__}: {reason}"[:500],
        )
    except Exception:  # a full disk can refuse this too; the original error is what matters
        log.debug("could not record the failure in %s", run.dir / "run.json", exc_info=True)


def start_summary(trainer: Trainer, state: TrainState | None) -> dict:
    """The start-of-run summary of a Trainer about to fit (from `state.epoch` on a resume)."""
    recipe, bb = trainer.recipe, trainer.model.backbone
    k = frozen_prefix(recipe.train.freeze, bb.num_stages, state.epoch if state else 0)
    precision = "mixed fp16/fp32 (autocast)" if trainer.amp else "fp32"
    return run_summary(
        recipe,
        trainer.splits,
        device=str(trainer.device),
        precision=precision,
        frozen_stages=k,
        num_stages=bb.num_stages,
        feature_cache=cache_usable(recipe, trainer.model, k),
    )


def _remove_stale_temp_files(run: Run) -> None:
    """Temporary files of atomic writes that a kill interrupted (`.<name>.<random>.tmp`): never read, remove."""
    for d in (run.dir, run.checkpoints):
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
