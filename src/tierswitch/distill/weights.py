"""Student weights for a fleet: versioned safetensors blobs in Redis, a ``current`` pointer, pub/sub announcements.

Versions read ``v{seq}.{published ms, hex}.{content hash}`` (e.g. ``v3.18c2f0a1b2c.5f1e9a0b2c4d``): the counter orders
them, the time and the sha256 of blob + spec + int8 flag make them unique across a Redis that lost its data (and
restarted ``seq`` at 1), so a subscriber already on an old ``v1...`` never mistakes new weights for the ones it
holds, and cache keys (which hold the tier version) never mix answers of two students.

Keys under ``namespace``: ``seq`` (version counter), ``blob:{v}`` (safetensors bytes), ``meta:{v}`` (JSON: sha256,
the ``StudentSpec``, tensor names and shapes, int8 flag, step, agreement, publish time), ``current`` and the list
``versions``. ``publish`` writes blob, meta and the pointer and announces the version in one MULTI/EXEC, so a reader
sees the old version or the complete new one. ``load`` verifies the checksum, then the tensor names, shapes, dtype
and finiteness against the spec before handing anything out; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from tierswitch.distill.student import StudentSpec
from tierswitch.errors import ConfigError, WeightVerificationError
from tierswitch.validation import describe, positive

__all__ = ["LoadedWeights", "WeightStore"]

log = logging.getLogger("tierswitch.distill")

#: What ``publish`` writes (and older stores wrote: ``v12``); ``load`` refuses any other pointer before using it.
VERSION_PATTERN = re.compile(r"v[0-9]+(\.[0-9a-f]+\.[0-9a-f]+)?")


@dataclass(frozen=True)
class LoadedWeights:
    """A verified version: its tensors, the architecture they fit, and the published metadata."""

    version: str
    state_dict: dict[str, torch.Tensor]
    spec: StudentSpec
    meta: dict[str, Any]


class WeightStore:
    """Versioned student weights in Redis. ``client`` is a ``redis.Redis`` with ``decode_responses=False``;
    ``keep`` old versions are kept (the current one never goes). ``clock`` stamps ``published_at``."""

    def __init__(
        self, client: Any, namespace: str, *, keep: int = 5, clock: Callable[[], float] = time.time
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ConfigError("weights.namespace", f"must be a non-empty string, got {describe(namespace)}")
        positive("weights.keep", keep, integer=True)
        self.client = client
        self.namespace = namespace
        self.keep = keep
        self.clock = clock

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    @property
    def channel(self) -> str:
        """The pub/sub channel announcing each newly current version."""
        return self.key("announce")

    def current(self) -> str | None:
        """The version now current, or None when nothing was published."""
        value = self.client.get(self.key("current"))
        if value is None:
            return None
        try:
            return str(value.decode("utf-8"))
        except UnicodeDecodeError:  # a corrupt pointer: returned escaped, so ``load`` names it and a subscriber
            return str(value.decode("utf-8", "backslashreplace"))  # remembers it instead of raising on every poll

    def publish(
        self, state_dict: Mapping[str, torch.Tensor], spec: StudentSpec, *, int8: bool = False, **info: Any
    ) -> str:
        """Store ``state_dict`` (float tensors fitting ``spec``) as a new version, make it current and announce it.
        ``info`` (plain JSON data: step, agreement ...) goes into the metadata. Returns the version."""
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
        _check(tensors, spec, "refusing to publish")
        blob = st_save(tensors)
        sha = hashlib.sha256(blob).hexdigest()
        published_at = self.clock()
        content = hashlib.sha256(f"{sha}|{spec.to_json()}|{bool(int8)}".encode()).hexdigest()[:12]
        version = f"v{int(self.client.incr(self.key('seq')))}.{int(published_at * 1000):x}.{content}"
        meta = {
            "version": version,
            "sha256": sha,
            "spec": spec.to_dict(),
            "tensors": {k: list(v.shape) for k, v in tensors.items()},
            "int8": bool(int8),
            "published_at": published_at,
            **info,
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key("blob", version), blob)
        pipe.set(self.key("meta", version), json.dumps(meta, sort_keys=True))
        pipe.set(self.key("current"), version)
        pipe.rpush(self.key("versions"), version)
        pipe.publish(self.channel, version)
        pipe.execute()
        self._collect_garbage(version)
        return version

    def _collect_garbage(self, current: str) -> None:
        excess = int(self.client.llen(self.key("versions"))) - self.keep
        for _ in range(max(0, excess)):
            old = self.client.lpop(self.key("versions"))
            if old is None:
                return
            old_v = old.decode()
            if old_v == current:  # never delete what is being served
                self.client.rpush(self.key("versions"), old_v)
                return
            self.client.delete(self.key("blob", old_v), self.key("meta", old_v))

    def load(self, version: str | None = None) -> LoadedWeights | None:
        """The verified weights of ``version`` (default: current), or None when nothing was published.

        Raises ``WeightVerificationError`` when the blob is missing, does not match its checksum, or its tensors do
        not match the spec's names and shapes (or hold NaN/inf)."""
        version = version or self.current()
        if version is None:
            return None
        if not VERSION_PATTERN.fullmatch(version):
            raise WeightVerificationError(f"the version pointer {describe(version)} in {describe(self.namespace)} is "
                                          "not one this store writes (corrupt or not UTF-8); publish again")
        blob, raw_meta = self.client.mget([self.key("blob", version), self.key("meta", version)])
        if blob is None or raw_meta is None:
            raise WeightVerificationError(f"weights {describe(version)} are missing from "
                                          f"{describe(self.namespace)} (expired?)")
        try:
            meta = json.loads(raw_meta)
            spec = StudentSpec.from_dict(meta["spec"])
            expected_sha = meta["sha256"]
        except RecursionError as exc:  # meta nested thousands deep
            raise WeightVerificationError(f"weights {describe(version)} have metadata nested too deeply") from exc
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            raise WeightVerificationError(f"weights {describe(version)} have unreadable metadata: {exc}") from exc
        if hashlib.sha256(blob).hexdigest() != expected_sha:
            raise WeightVerificationError(f"weights {describe(version)} fail their sha256 checksum; not loading them")
        try:
            tensors = st_load(blob)
        except Exception as exc:  # safetensors raises its own error types on a malformed header
            raise WeightVerificationError(f"weights {describe(version)} are not valid safetensors: {exc}") from exc
        _check(tensors, spec, f"weights {describe(version)} rejected")
        if {k: list(v.shape) for k, v in tensors.items()} != meta.get("tensors"):
            raise WeightVerificationError(f"weights {describe(version)} do not match the tensor list in their metadata")
        return LoadedWeights(version, tensors, spec, meta)


def _check(tensors: Mapping[str, torch.Tensor], spec: StudentSpec, what: str) -> None:
    expected = spec.shapes()
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise WeightVerificationError(
            f"{what}: tensors do not fit the student spec (missing {missing}, unexpected {extra}, "
            f"wrong shape {wrong})"
        )
    for name, tensor in tensors.items():
        if tensor.dtype != torch.float32:
            raise WeightVerificationError(f"{what}: tensor {describe(name)} is {tensor.dtype}, expected float32")
        if not torch.isfinite(tensor).all():
            raise WeightVerificationError(f"{what}: tensor {describe(name)} holds NaN or inf")
