"""Whether a bundle may be trusted: one verification for every entry point (CLI, `Predictor.load`, bench).

manifest.json is the root of trust: it lists the sha256 of every file. So:

- every file a command reads is checked against its hash, and the labels files (`labels/<task>.txt`) always
  are, and must say what the manifest's `tasks[].labels` say (an edited class name is caught);
- a file in the bundle that the manifest does not list is refused (the runtime would never check it), except
  what commands write beside a bundle (`bench.json`, `bench.md`, `bench.png`, `bench_data.npz`,
  `bench-remote/`, the DeepStream config `deepstream/`, none of which the runtime reads) and hidden files;
- with a public key, the manifest itself must carry a valid detached Ed25519 signature
  (`manifest.json.sig`, written by `edgetl export --sign KEY`): its hashes then vouch for every file. The
  exact bytes whose signature was checked are the bytes parsed.

Torch-free. `cryptography` is imported only when a key is given (extra `edgetl[sign]`).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from edgetl.errors import EdgetlError
from edgetl.runtime.atomic import atomic_write_text
from edgetl.runtime.limits import read_limited
from edgetl.runtime.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    read_manifest,
    resolve_in_bundle,
    verify_files,
)

__all__ = [
    "BESIDE_BUNDLE",
    "SIGNATURE_NAME",
    "check_bundle",
    "load_private_key",
    "load_public_key",
    "read_trusted_manifest",
    "refuse_unlisted",
    "sign_manifest",
]

# files commands write into a bundle directory that the manifest cannot list (they come after it)
BESIDE_BUNDLE = frozenset(
    {SIGNATURE_NAME, "bench.json", "bench.md", "bench.png", "bench_data.npz", "bench-remote", "deepstream"}
)
_INSTALL = "pip install 'edgetl[sign]' (or: pip install cryptography)"
_MAX_KEY_BYTES = 64_000


# ------------------------------------------------------------------------------------------------ keys
def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise EdgetlError(f"signed bundles need the cryptography package: {_INSTALL}") from None
    return serialization, ed25519


def _key_bytes(key: str | os.PathLike[str] | bytes, what: str) -> tuple[bytes, str]:
    if isinstance(key, bytes):
        return key, what
    return read_limited(key, what, _MAX_KEY_BYTES), f"{what} {key}"


def load_public_key(key: Any) -> Any:
    """An Ed25519 public key from a file path or bytes: PEM (`openssl pkey -pubout`), OpenSSH
    (`ssh-ed25519 AAAA...`), or the raw 32 bytes; an `Ed25519PublicKey` is returned as it is."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    data, shown = _key_bytes(key, "public key")
    try:
        if len(data) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
        if data.lstrip().startswith(b"ssh-"):
            loaded = serialization.load_ssh_public_key(data.strip())
        else:
            loaded = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, binascii.Error) as e:
        raise EdgetlError(f"{shown}: not an Ed25519 public key (PEM, OpenSSH or 32 raw bytes): {e}") from None
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise EdgetlError(f"{shown}: a {type(loaded).__name__}, not an Ed25519 public key")
    return loaded


def load_private_key(key: Any) -> Any:
    """An Ed25519 private key from an unencrypted PEM file (`openssl genpkey -algorithm ed25519`) or bytes."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    data, shown = _key_bytes(key, "--sign key")
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH"):
            loaded = serialization.load_ssh_private_key(data, password=None)
        else:
            loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise EdgetlError(f"{shown}: not an unencrypted Ed25519 private key (PEM or OpenSSH): {e}") from None
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise EdgetlError(f"{shown}: a {type(loaded).__name__}, not an Ed25519 private key")
    return loaded


# ------------------------------------------------------------------------------------------ signature
def sign_manifest(bundle_dir: str | os.PathLike[str], private_key: Any) -> Path:
    """Write `manifest.json.sig`: the base64 Ed25519 signature of manifest.json's bytes."""
    key = load_private_key(private_key)
    manifest = Path(bundle_dir) / MANIFEST_NAME
    sig = key.sign(read_limited(manifest, "manifest", 10_000_000))
    return atomic_write_text(Path(bundle_dir) / SIGNATURE_NAME, base64.b64encode(sig).decode("ascii") + "\n")


def _signature_check(bundle_dir: Path, public_key: Any):
    key = load_public_key(public_key)
    from cryptography.exceptions import InvalidSignature

    def check(path: Path, data: bytes) -> None:
        sig_path = bundle_dir / SIGNATURE_NAME
        if not os.path.lexists(sig_path):
            raise EdgetlError(f"{path}: not signed (no {SIGNATURE_NAME}); a public key was given, so it is refused")
        try:
            sig = base64.b64decode(read_limited(sig_path, "signature", 1_000).strip(), validate=True)
            key.verify(sig, data)
        except (InvalidSignature, binascii.Error, ValueError):
            raise EdgetlError(
                f"{path}: signature {SIGNATURE_NAME} does not verify with the given public key; the manifest was "
                "changed after signing, or signed with another key"
            ) from None

    return check


def read_trusted_manifest(bundle_dir: str | os.PathLike[str], public_key: Any = None) -> Manifest:
    """The bundle's manifest; with `public_key`, only if its signature verifies (over the bytes parsed)."""
    check = _signature_check(Path(bundle_dir), public_key) if public_key is not None else None
    return read_manifest(bundle_dir, check)


# ------------------------------------------------------------------------------------------ contents
def check_bundle(
    bundle_dir: str | os.PathLike[str],
    manifest: Manifest,
    names: Iterable[str] | None = None,
    unlisted: bool = True,
) -> dict[str, str]:
    """Verify `names` (default: every listed file) and the labels files against the manifest's hashes, the
    labels files against `tasks[].labels`, and refuse unlisted files (`unlisted=False`: the caller does it
    later with `refuse_unlisted`, after more specific checks); return {name: sha256} checked."""
    root = Path(bundle_dir)
    label_files = [f"labels/{t.name}.txt" for t in manifest.tasks if f"labels/{t.name}.txt" in manifest.files]
    wanted = list(manifest.files) if names is None else list(dict.fromkeys([*names, *label_files]))
    digests = verify_files(root, manifest, wanted)
    for t in manifest.tasks:
        rel = f"labels/{t.name}.txt"
        if rel not in manifest.files:
            continue
        text = resolve_in_bundle(root, rel, "file").read_text(encoding="utf-8")
        if text != "\n".join(t.labels) + "\n":
            raise EdgetlError(
                f"{root / MANIFEST_NAME}: tasks.{t.name}.labels differ from {rel} (the manifest was edited)"
            )
    if unlisted:
        refuse_unlisted(root, manifest)
    return digests


def refuse_unlisted(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """EdgetlError naming the first file in the bundle that the manifest does not list (BESIDE_BUNDLE aside)."""
    root = Path(bundle_dir)
    listed = set(manifest.files) | {MANIFEST_NAME}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        parts = PurePosixPath(rel).parts
        if rel in listed or parts[0] in BESIDE_BUNDLE or any(p.startswith(".") for p in parts):
            continue
        raise EdgetlError(
            f"{path}: in the bundle but not listed in {MANIFEST_NAME} 'files', so nothing vouches for it; "
            "remove it or export again"
        )
