"""The versioned msgpack envelope that carries one ``Prediction`` in a shared cache.

A value is a msgpack array ``[schema, output, probs, confidence, cost, tier, tier_version, latency_s, created_at,
probs_dtype, probs_shape, usage]``, where ``probs`` is the raw bytes of the class probabilities (or nil) and
``usage`` is ``[prompt_tokens, completion_tokens]`` of a language-model answer (or nil). Schema 2 envelopes (the
same without ``usage``, written by the previous release) still decode, with ``usage=None``.
An array (not a map) keeps values small and decoding fast; ``schema`` comes first so a reader can refuse a layout
it does not know. The probabilities travel inline as raw bytes with their dtype and shape in the last two fields
(no nested decode on the hot path: a batch read decodes one envelope per key); array outputs travel as raw bytes
through ``tierswitch.serialization``; both come back read-only and bit-exact. Nothing is pickled. Tuples come
back as lists (msgpack has one sequence type).
"""

from __future__ import annotations

from math import isfinite
from typing import Any

from tierswitch.errors import CorruptCacheValue
from tierswitch.serialization import array_from_parts, array_parts, pack, unpack
from tierswitch.types import Prediction, Usage

__all__ = ["SCHEMA_VERSION", "decode", "encode"]

SCHEMA_VERSION = 3
_FIELDS = 12
_FIELDS_V2 = 11  # schema 2: no usage field; still read


def encode(prediction: Prediction, created_at: float) -> bytes:
    """Encode ``prediction`` (stamped with the wall-clock time ``created_at``) as envelope bytes.

    Raises ``UnsupportedInput`` when the output holds something msgpack cannot carry (a custom object, an object
    array); callers that cache treat that as "not storable".
    """
    confidence = prediction.confidence
    dtype = shape = raw = None
    if prediction.probs is not None:
        dtype, shape, raw = array_parts(prediction.probs)
    usage = prediction.usage
    return pack(
        [
            SCHEMA_VERSION,
            prediction.output,
            raw,
            None if confidence is None else float(confidence),
            float(prediction.cost),
            prediction.tier,
            prediction.tier_version,
            float(prediction.latency_s),
            float(created_at),
            dtype,
            shape,
            None if usage is None else [int(usage.prompt_tokens), int(usage.completion_tokens)],
        ]
    )


def decode(data: bytes) -> tuple[Prediction, float]:
    """Decode envelope bytes into ``(prediction, created_at)``.

    Raises ``CorruptCacheValue`` when the bytes are not msgpack, the schema version is unknown, or a field has the
    wrong type; the message says which, so an operator can tell a corrupt value from a newer writer.
    """
    try:
        env = unpack(data)
    except Exception as exc:  # msgpack raises several unrelated types on garbage; all mean "corrupt"
        raise CorruptCacheValue(f"cache value is not a valid msgpack envelope ({type(exc).__name__}: {exc})") from exc
    if type(env) is not list or len(env) != _FIELDS or env[0] != SCHEMA_VERSION:
        if type(env) is list and len(env) == _FIELDS_V2 and env[0] == 2:
            env = [*env, None]  # the previous schema: the same fields, no usage
        else:
            raise CorruptCacheValue(_what_is_wrong(env))
    _, output, raw, confidence, cost, tier, version, latency, created_at, dtype, shape, usage = env
    # One combined check on the hot path (a hit decodes in a few microseconds); the message is built only on failure.
    if (
        type(tier) is not str
        or type(version) is not str
        or (raw is not None and (type(raw) is not bytes or type(dtype) is not str or type(shape) is not list))
        or type(cost) is not float
        or type(latency) is not float
        or type(created_at) is not float
        or not (isfinite(cost) and isfinite(latency) and isfinite(created_at))
        or (confidence is not None and (type(confidence) is not float or not isfinite(confidence)))
        or (usage is not None and not _is_usage(usage))
    ):
        raise CorruptCacheValue(_what_is_wrong(env))
    probs = None
    if raw is not None:
        try:
            probs = array_from_parts(dtype, shape, raw)
        except (ValueError, TypeError) as exc:
            raise CorruptCacheValue(f"cache envelope field 'probs' does not decode: {exc}") from exc
    used = None if usage is None else Usage(usage[0], usage[1])
    return Prediction(output, tier, version, cost, latency, probs, confidence, used), created_at


def _is_usage(value: Any) -> bool:
    return (
        type(value) is list and len(value) == 2
        and all(type(v) is int and 0 <= v < 1 << 53 for v in value)
    )


def _what_is_wrong(env: Any) -> str:
    if not isinstance(env, list) or not env:
        return f"cache value is a {type(env).__name__}, expected a msgpack array envelope"
    if env[0] not in (2, SCHEMA_VERSION):
        return (
            f"cache value has schema {env[0]!r}, this reader knows 2 and {SCHEMA_VERSION}; "
            "purge the namespace or upgrade the readers"
        )
    if len(env) != _FIELDS:
        return f"cache envelope has {len(env)} fields, schema {SCHEMA_VERSION} has {_FIELDS}"
    names = ("schema", "output", "probs", "confidence", "cost", "tier", "tier_version", "latency_s", "created_at",
             "probs_dtype", "probs_shape", "usage")
    fields = dict(zip(names, env))
    for name in ("tier", "tier_version"):
        if not isinstance(fields[name], str):
            return f"cache envelope field {name!r} is {fields[name]!r}, expected a string"
    if fields["probs"] is not None and not (
        isinstance(fields["probs"], bytes) and isinstance(fields["probs_dtype"], str)
        and isinstance(fields["probs_shape"], list)
    ):
        return "cache envelope fields 'probs', 'probs_dtype', 'probs_shape' are not raw bytes, a dtype and a shape"
    for name in ("confidence", "cost", "latency_s", "created_at"):
        value = fields[name]
        if not (name == "confidence" and value is None) and not (type(value) is float and isfinite(value)):
            return f"cache envelope field {name!r} is {value!r}, expected a finite float"
    if fields["usage"] is not None and not _is_usage(fields["usage"]):
        return "cache envelope field 'usage' is not [prompt_tokens, completion_tokens] (two non-negative ints)"
    return "cache envelope is malformed"
