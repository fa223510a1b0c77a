"""The order of a training epoch, and how several datasets are mixed in it.

One source: a permutation that depends only on (seed, epoch), so a resumed run sees the same batches.
Several sources with `ratio`s: each epoch still has as many rows as the training split, drawn from each
source in proportion to its ratio (a small source is cycled through in fresh permutations, a large one
sub-sampled differently each epoch), then shuffled together — again a pure function of (seed, epoch).
"""

from __future__ import annotations

import numpy as np

from edgetl.errors import EdgetlError


def ratios_of(recipe) -> list[float] | None:
    """Per-source sampling ratios, `data` first then `extra_data` in order; None: proportional to size."""
    specs = [("data", recipe.data)] + [(f"extra_data.{n}", s) for n, s in recipe.extra_data.items()]
    given = [(w, s.ratio) for w, s in specs if s.ratio is not None]
    if not given:
        return None
    if len(specs) == 1:
        raise EdgetlError("data.ratio: only used to mix several datasets (extra_data); remove it")
    if len(given) != len(specs):
        missing = next(w for w, s in specs if s.ratio is None)
        raise EdgetlError(
            f"{missing}.ratio: set a sampling ratio on every dataset or on none "
            f"({', '.join(w for w, _ in given)} set one)"
        )
    return [float(s.ratio) for _, s in specs]


def split_counts(n: int, ratios: list[float]) -> np.ndarray:
    """n rows shared by ratio, largest remainders first, summing exactly to n."""
    w = np.asarray(ratios, dtype=np.float64)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    if rest:
        counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The data order of an epoch depends only on (seed, epoch), so a resumed run sees the same batches."""
    return np.random.default_rng([seed, epoch, 7919]).permutation(n)


def epoch_rows(
    seed: int, epoch: int, n: int, dataset_ids: np.ndarray | None = None, ratios: list[float] | None = None
) -> np.ndarray:
    """Row order of one epoch (see the module doc)."""
    rng = np.random.default_rng([seed, epoch, 7919])
    if dataset_ids is None or ratios is None:
        return rng.permutation(n)  # == epoch_order
    counts = split_counts(n, ratios)
    parts = []
    for i, c in enumerate(counts):
        rows = np.flatnonzero(dataset_ids == i)
        if c == 0 or len(rows) == 0:
            continue
        reps = -(-int(c) // len(rows))
        pool = np.concatenate([rows[rng.permutation(len(rows))] for _ in range(reps)])
        parts.append(pool[:c])
    order = np.concatenate(parts) if parts else np.arange(0)
    return order[rng.permutation(len(order))]


def train_order(recipe, examples, epoch: int) -> np.ndarray:
    """The training split's row order at `epoch` for this recipe.

    Unlabeled rows (`distill.unlabeled`, dataset id < 0) are all in every epoch. With one source they are
    simply part of the permutation; with mixing ratios the labelled rows are mixed first, then shuffled
    together with the unlabeled ones -- a pure function of (seed, epoch) either way.
    """
    ids = examples.dataset
    ratios = ratios_of(recipe) if ids is not None else None
    if ids is None or ratios is None or not (ids < 0).any():
        return epoch_rows(recipe.train.seed, epoch, len(examples), ids, ratios)
    lab, unl = np.flatnonzero(ids >= 0), np.flatnonzero(ids < 0)
    mixed = lab[epoch_rows(recipe.train.seed, epoch, len(lab), ids[lab], ratios)]
    order = np.concatenate([mixed, unl])
    return order[np.random.default_rng([recipe.train.seed, epoch, 15_013]).permutation(len(order))]
