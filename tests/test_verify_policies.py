"""Signals that accept a generated answer, and ``VerifiedCascade`` recording which signal decided."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tierswitch.config import policy_from_config
from tierswitch.errors import ConfigError
from tierswitch.policies import (
    AllOf,
    FormatCheck,
    LogprobConfidence,
    SelfVerify,
    VerifiedCascade,
    Verifier,
)
from tierswitch.policies.self_verify import DEFAULT_TEMPLATE
from tierswitch.router import Router
from tierswitch.testing import LatencyModel, RecordedRow, RecordedServer, RecordedTable, build_app
from tierswitch.tiers import CallableTier
from tierswitch.tiers.openai import OpenAITier
from tierswitch.types import Prediction


def pred(output, confidence=None, tier="small"):
    return Prediction(output, tier, "1", 0.0, 0.0, confidence=confidence)


def test_format_check_regex_and_json_schema():
    ends = FormatCheck.ends_with_number()
    assert ends.score("q", pred("so the answer is 42.")) == 1.0
    assert ends.score("q", pred("#### 1,250")) == 1.0
    assert ends.score("q", pred("I am not sure")) == 0.0
    schema = FormatCheck(schema={"required": {"answer": "number", "why": "string"}})
    assert schema.score("q", pred('```json\n{"answer": 3, "why": "sum"}\n```')) == 1.0
    assert schema.score("q", pred('{"answer": "3", "why": "sum"}')) == 0.0
    assert schema.score("q", pred('{"answer": true, "why": "sum"}')) == 0.0
    assert schema.score("q", pred("not json")) == 0.0
    with pytest.raises(ConfigError, match="schema.required.answer"):
        FormatCheck(schema={"required": {"answer": "float"}})
    with pytest.raises(ConfigError, match="regex"):
        FormatCheck("(")


def test_verifier_gets_the_prompt_and_answer_and_never_fails_the_request():
    seen = []
    v = Verifier(lambda prompt, answer: seen.append((prompt, answer)) or 0.7, name="checker")
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "2+2?"}]}
    assert v.score(chat, pred("4")) == 0.7 and seen == [("2+2?", "4")]
    assert Verifier(lambda p, a: 1 / 0).score("q", pred("a")) is None
    assert Verifier(lambda p, a: float("nan")).score("q", pred("a")) is None
    assert Verifier(lambda p, a: 3).score("q", pred("a")) == 1.0


def test_logprob_and_all_of():
    assert LogprobConfidence().score("q", pred("a", 0.8)) == 0.8
    assert LogprobConfidence().score("q", pred("a")) is None
    both = AllOf([LogprobConfidence(), FormatCheck.ends_with_number()])
    assert both.score("q", pred("it is 7", 0.9)) == 0.9
    assert both.weakest("q", pred("no number", 0.9))[0].name == "format:ends_with_number"


def test_verified_cascade_escalates_and_records_the_deciding_signal():
    small = CallableTier("small", lambda x: "I think it is unclear", cost=1.0)
    full = CallableTier("full", lambda x: "it is 12", cost=10.0)
    policy = VerifiedCascade(AllOf([FormatCheck.ends_with_number(), Verifier(lambda p, a: 0.9, "judge")]),
                             {"small": 0.5})
    router = Router([small, full], policy=policy)
    out = router("what is 3 x 4?")
    assert out.tier == "full" and out.cost == 11.0
    verdict = policy.last_verdicts[(out.digest, "small")]
    assert verdict.signal == "format:ends_with_number" and not verdict.accepted
    assert verdict.detail() == "format:ends_with_number 0.000 < 0.5"
    escalate = next(step for step in out.trace if step.kind == "escalate")
    assert escalate.detail == "small format:ends_with_number 0.000 < 0.5"  # the trace names the deciding signal
    assert policy.counts[("format:ends_with_number", False)] == 1 and policy.counts[(None, True)] == 1
    assert "format:ends_with_number 0.000 < 0.5" in router.batch(["what is 4 x 4?"])[0].explain()
    small2 = CallableTier("small", lambda x: "it is 12", cost=1.0)
    policy2 = VerifiedCascade({"small": Verifier(lambda p, a: 0.4, "judge")}, {"small": 0.3})
    assert Router([small2, full], policy=policy2)("q").tier == "small"


def test_config_kinds_round_trip():
    config = {"kind": "verified_cascade", "signal": {"kind": "format", "preset": "ends_with_number"},
              "thresholds": {"small": 0.5}}
    policy = policy_from_config(config)
    assert isinstance(policy, VerifiedCascade) and policy.signal.name == "format:ends_with_number"
    per_tier = policy_from_config({"kind": "verified_cascade", "thresholds": {"a": 0.6, "b": 0.7}, "signals": {
        "a": {"kind": "logprob"}, "b": {"kind": "verifier", "function": "math:isfinite"}}})
    assert per_tier.to_config()["signals"] == {"a": {"kind": "logprob"}, "b": {
        "kind": "verifier", "function": "math:isfinite", "name": "isfinite"}}
    assert policy_from_config(per_tier.to_config()).to_config() == per_tier.to_config()
    for bad, field in [({"kind": "verified_cascade", "thresholds": {"a": 2}, "signal": {"kind": "logprob"}},
                        "policy.thresholds.a"),
                       ({"kind": "verified_cascade", "signal": {"kind": "vibes"}}, "policy.signal.kind"),
                       ({"kind": "verified_cascade", "signal": {"kind": "format", "regex": "("}},
                        "policy.signal.regex"),
                       ({"kind": "verified_cascade", "signal": {"kind": "verifier", "function": "nope:fn"}},
                        "policy.signal.function"),
                       ({"kind": "verified_cascade"}, "policy.signal")]:
        with pytest.raises(ConfigError) as info:
            policy_from_config(bad)
        assert info.value.field == field, (bad, info.value)


def test_self_verify_asks_the_tier_over_real_http():
    q_good, q_bad = "What is 2 + 2?", "What is 3 + 3?"
    rows = [RecordedRow(q_good, {"small": "4"}, {"small": True}),
            RecordedRow(q_bad, {"small": "7"}, {"small": False}),
            RecordedRow(DEFAULT_TEMPLATE.format(question=q_good, answer="4"), {"small": "Yes"}, {"small": True}),
            RecordedRow(DEFAULT_TEMPLATE.format(question=q_bad, answer="7"), {"small": "No."}, {"small": True})]
    with RecordedServer(build_app(RecordedTable(rows), {"small": LatencyModel(scale=0)})) as server:
        small = OpenAITier("small", server.base_url, "small", params={"temperature": 0}, confidence=None)
        signal = SelfVerify(small)
        assert signal.score(q_good, small.predict_one(q_good)) == 1.0
        assert signal.score(q_bad, small.predict_one(q_bad)) == 0.0
        with_logprobs = SelfVerify(OpenAITier("small", server.base_url, "small", confidence="first"))
        score = with_logprobs.score(q_good, pred("4"))
        assert 0.6 < score <= 1.0  # P("yes") from the (synthetic) first-token logprob
        full = CallableTier("full", lambda x: "6", cost=5.0)
        router = Router([small, full], policy=VerifiedCascade(signal, {"small": 0.5}))
        assert router(q_good).tier == "small" and router(q_bad).tier == "full"
        assert signal.calls == 4


def test_a_self_verification_call_is_paid_by_the_request_that_needed_it():
    """The judge's tier call is part of ``Routed.cost`` (sync, async and batch paths), never of another request's."""
    answers = {"q": ("answer", 1.0)}

    def small_fn(x: Any) -> Any:
        if isinstance(x, dict):  # the verification prompt
            return "Yes"
        return answers[x][0]

    small = CallableTier("small", small_fn, cost=0.5)
    judge = CallableTier("judge", lambda x: "Yes" if "answer" in str(x) else "No", cost=0.25)
    full = CallableTier("full", lambda x: "full answer", cost=5.0)
    policy = VerifiedCascade(SelfVerify(judge), {"small": 0.5})
    router = Router([small, full], policy, cache=None)
    routed = router("q")
    assert routed.tier == "small" and routed.cost == 0.5 + 0.25  # the answer, then its verification
    assert asyncio.run(router.acall("q")).cost == 0.75
    assert [r.cost for r in router.batch(["q", "q"])] == [0.75, 0.75]
