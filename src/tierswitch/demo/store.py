"""Where the demo keeps trained tiers between runs: plain JSON + npz in the user's cache directory, never pickle.

A bundle is a directory ``<cache>/models/<name>-<key>/`` holding ``meta.json`` (configuration, vocabularies,
metrics) and ``arrays.npz`` (weights; loaded with ``allow_pickle=False``). ``key`` hashes the data fingerprint, the
hyperparameters and the format version, so a change to any of them trains afresh instead of reusing a stale model.
Bundles are written to a temporary directory and renamed into place, so a crash never leaves half a model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError

__all__ = ["FORMAT_VERSION", "ModelStore", "bundle_key", "default_cache_dir"]

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$TIERSWITCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/tierswitch``, else ``~/.cache/tierswitch``."""
    explicit = os.environ.get("TIERSWITCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "tierswitch"


def bundle_key(fingerprint: str, params: Mapping[str, Any]) -> str:
    """A short hash of the training data's fingerprint, the hyperparameters and the bundle format."""
    blob = json.dumps({"data": fingerprint, "params": params, "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


class ModelStore:
    """Save and load named bundles under ``root`` (default: ``default_cache_dir()``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, name: str, key: str) -> Path:
        return self.root / "models" / f"{name}-{key}"

    def load(self, name: str, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The bundle's (meta, arrays), or None when absent or unreadable (it is then retrained)."""
        path = self.path(name, key)
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            with np.load(path / "arrays.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
            return None
        return meta, arrays

    def save(self, name: str, key: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
        """Write the bundle atomically; returns its directory."""
        final = self.path(name, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        except OSError as exc:
            raise ConfigError(
                "demo.cache_dir", f"cannot write trained models under {self.root} ({exc}); set TIERSWITCH_CACHE_DIR"
            ) from exc
        try:
            for k, arr in arrays.items():
                if np.asarray(arr).dtype.kind not in "biuf":
                    raise ValueError(f"array {k!r} has dtype {np.asarray(arr).dtype}; only numeric arrays are stored")
            np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
            body = {**meta, "format": FORMAT_VERSION, "key": key, "name": name}
            (tmp / "meta.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
            try:
                os.replace(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                if self.load(name, key) is not None:  # another run saved the same bundle first: keep theirs
                    shutil.rmtree(tmp, ignore_errors=True)
                    return final
                shutil.rmtree(final)  # an unreadable bundle (a crash, a corrupt disk) gives way to the new one
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def size_bytes(self, name: str, key: str) -> int:
        """Bytes on disk of a saved bundle (0 when absent)."""
        path = self.path(name, key)
        return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else 0
