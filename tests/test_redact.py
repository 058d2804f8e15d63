from conftest import Recorder
from test_machine import Run

from gateway.redact import Redactor, truncate
from gateway.sessions.machine import MachineOptions, SessionMachine


def test_builtin_patterns_redact_emails_phones_and_cards_but_not_plain_numbers() -> None:
    redact = Redactor(["email", "phone", "card"], [])
    text = redact("I'm ann@example.org, +44 20 7946 0958, card 5500-0000-0000-0004; I'm 42, it's 2024.")
    assert "ann@example.org" not in text and "7946" not in text and "5500" not in text
    assert "[REDACTED:email]" in text and "[REDACTED:phone]" in text and "[REDACTED:card]" in text
    assert "42" in text and "2024" in text


def test_custom_patterns_run_after_the_builtins() -> None:
    assert Redactor([], [r"ORD-\d+"])("order ORD-7781 shipped") == "order [REDACTED:custom] shipped"


def test_truncation_keeps_the_limit_and_says_so() -> None:
    cut = truncate("x" * 1000, 100)
    assert len(cut) == 100 and cut.endswith("chars]") and "truncated 9" in cut
    assert truncate("short", 100) == "short"


def test_captured_content_is_redacted_before_any_span_is_built(recorder: Recorder) -> None:
    options = MachineOptions.capture_all(redactor=Redactor(["email", "card"], []), max_attribute_length=200)
    r = Run(SessionMachine(options), recorder)
    r.send("user.transcript", text="my email is bob@example.com")
    r.send("tool.call", call_id="a", name="pay", arguments={"card": "4111 1111 1111 1111"})
    r.send("tool.result", call_id="a", result="x" * 500)
    r.send("model.transcript", text="thanks bob@example.com")
    r.send("model.turn_complete")
    r.end()
    for span in recorder.spans():
        flat = repr(dict(span.attributes or {}))
        assert "bob@example.com" not in flat and "4111" not in flat
        for value in (span.attributes or {}).values():
            assert not isinstance(value, str) or len(value) <= 200
    tool = recorder.named("execute_tool")[0]
    assert "[REDACTED:card]" in str(tool.attributes["gen_ai.tool.call.arguments"])
    assert "truncated" in str(tool.attributes["gen_ai.tool.call.result"])


def test_each_content_kind_is_captured_only_when_turned_on(recorder: Recorder) -> None:
    r = Run(SessionMachine(MachineOptions(tool_arguments=True)), recorder)
    r.send("user.transcript", text="hello")
    r.send("tool.call", call_id="a", name="t", arguments={"q": 1})
    r.send("tool.result", call_id="a", result="secret result")
    r.send("model.turn_complete")
    r.end()
    tool = recorder.named("execute_tool")[0]
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"q":1}'
    assert "gen_ai.tool.call.result" not in tool.attributes
    assert "gen_ai.input.messages" not in recorder.named("invoke_agent")[0].attributes


def test_error_texts_are_redacted_even_with_capture_off(recorder: Recorder) -> None:
    r = Run(SessionMachine(MachineOptions(redactor=Redactor(["email", "card"], []))), recorder)
    r.send("connection.open")
    r.send("tool.call", call_id="a", name="pay", arguments={"card": "4111 1111 1111 1111"})
    r.send("tool.result", call_id="a", error="card 4111 1111 1111 1111 declined for bob@example.com")
    r.send("error", error_type="client", message="could not reach bob@example.com")
    r.send("connection.close", reason="kicked: bob@example.com")
    r.end()
    for span in recorder.spans():
        texts = [repr(dict(span.attributes or {})), str(span.status.description)]
        texts += [repr(dict(e.attributes or {})) for e in span.events]
        assert not any("bob@example.com" in t or "4111" in t for t in texts), span.name
    tool = recorder.named("execute_tool")[0]
    assert tool.status.description is not None and "[REDACTED:card]" in tool.status.description
