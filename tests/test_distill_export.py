"""LLM-as-teacher: full-tier answers collected by a hook and exported as chat fine-tuning JSONL; closed labels."""

from __future__ import annotations

import json

from llm_servers import TABLE, tier
from tierswitch.cli import main as cli_main
from tierswitch.distill.export import ChatSamples, export_jsonl, read_samples
from tierswitch.policies import FormatCheck, VerifiedCascade
from tierswitch.router import Router
from tierswitch.testing import RecordedServer


def test_full_tier_answers_export_as_chat_jsonl(tmp_path):
    samples_path = tmp_path / "samples.jsonl"
    with RecordedServer.gsm8k(["mixtral", "gpt4"]) as server:
        router = Router([tier(server, "mixtral"), tier(server, "gpt4")],
                        policy=VerifiedCascade(FormatCheck(r"####\s*-?[\d,.]+\s*$"), {"mixtral": 0.5}))
        hook = ChatSamples("gpt4", max_samples=5, path=samples_path)
        router.add_hook(hook)
        rows = TABLE.rows[:60]
        routed = [router({"messages": [{"role": "user", "content": r.prompt}], "temperature": 0}) for r in rows]
        router({"messages": [{"role": "user", "content": rows[0].prompt}], "temperature": 0})  # cached: not kept
        hook.close()
    full = [(r, o) for r, o in zip(rows, routed) if o.tier == "gpt4"]
    assert len(full) > 5 and len(hook) == 5  # bounded buffer; the file has them all
    on_disk = list(read_samples(samples_path))
    assert len(on_disk) == len(full)
    assert on_disk[0]["tier_version"] == "gpt4" and on_disk[0]["usage"]["completion_tokens"] > 0
    out = tmp_path / "train.jsonl"
    code = cli_main(["distill", "export", str(samples_path), "--out", str(out), "--tier", "gpt4"])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(full)
    first_row, first_out = full[0]
    assert lines[0]["messages"] == [{"role": "user", "content": first_row.prompt},
                                    {"role": "assistant", "content": first_out.output}]
    assert lines[0]["metadata"]["tier"] == "gpt4"
    assert export_jsonl(on_disk, out, metadata=False, limit=2) == 2
    assert set(json.loads(out.read_text().splitlines()[0])) == {"messages"}


def test_closed_label_llm_teacher_feeds_the_student_like_a_classifier():
    from tierswitch.distill.buffer import MemoryBuffer
    from tierswitch.distill.feed import DistillFeeder
    from tierswitch.policies import Cascade
    from tierswitch.testing import LatencyModel, RecordedRow, RecordedTable, build_app
    from tierswitch.tiers import CallableTier
    from tierswitch.tiers.openai import OpenAITier

    labels = ["card_lost", "refund", "balance"]
    rows = [RecordedRow("I lost my card yesterday", {"teacher": "card_lost"}, {"teacher": True}),
            RecordedRow("where is my refund?", {"teacher": "The intent is: refund."}, {"teacher": True}),
            RecordedRow("how much money do I have", {"teacher": "Balance"}, {"teacher": True})]
    with RecordedServer(build_app(RecordedTable(rows), {"teacher": LatencyModel(scale=0)})) as server:
        teacher = OpenAITier("teacher", server.base_url, "teacher", labels=labels, params={"temperature": 0})
        student = CallableTier("student", lambda x: ("refund", [0.4, 0.3, 0.3]))
        router = Router([student, teacher], policy=Cascade({"student": 0.9}))
        buffer = MemoryBuffer(100)
        feeder = DistillFeeder(buffer, classes=labels).attach(router).start()
        outs = [router(r.prompt) for r in rows]
        assert [o.output for o in outs] == labels and all(o.tier == "teacher" for o in outs)
        assert feeder.flush()
        feeder.stop()
    taken = buffer.take(10)
    assert sorted(s.label for s in taken.samples) == [0, 1, 2]
    assert {s.raw for s in taken.samples} == {r.prompt for r in rows}
