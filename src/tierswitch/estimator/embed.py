"""Text embedders for the similarity outcome model: any ``Callable[[list[str]], ndarray]`` of shape ``(n, d)``.

``SentenceTransformerEmbedder(path)`` adapts a sentence-transformers model that is already on disk: the package is
imported only when the first batch is embedded, and the model is loaded from ``path`` with no download (the
``HF_HUB_OFFLINE`` switch is set while loading). It is an optional dependency: without it, a ``ConfigError`` says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tierswitch.errors import ConfigError

__all__ = ["SentenceTransformerEmbedder", "embedder_from_config"]


class SentenceTransformerEmbedder:
    """Embed texts with a local sentence-transformers model directory (loaded lazily, never downloaded)."""

    def __init__(self, path: str, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.path = str(path)
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            if not os.path.isdir(self.path):
                raise ConfigError("embedder.path", f"{self.path!r} is not a local model directory; "
                                  "download the model yourself and point path at it")
            try:
                from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
            except ImportError as exc:
                raise ConfigError("embedder", "needs the optional package sentence-transformers "
                                  "(pip install sentence-transformers)") from exc
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            self._model = SentenceTransformer(self.path, device=self.device)
        return self._model

    def __call__(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        return np.asarray(model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                       normalize_embeddings=True), dtype=np.float64)

    def to_config(self) -> dict[str, Any]:
        return {"kind": "sentence-transformers", "path": self.path, "batch_size": self.batch_size,
                "device": self.device}


def embedder_from_config(config: Mapping[str, Any]) -> SentenceTransformerEmbedder:
    """``{"kind": "sentence-transformers", "path": DIR}`` -> the adapter (``ConfigError`` for anything else)."""
    if not isinstance(config, Mapping) or config.get("kind") != "sentence-transformers" or "path" not in config:
        raise ConfigError("embedder", f"must be {{kind: sentence-transformers, path: DIR}}, got {config!r}")
    return SentenceTransformerEmbedder(str(config["path"]), batch_size=int(config.get("batch_size", 64)),
                                       device=str(config.get("device", "cpu")))
