"""``lambdas/notifications/dead_letter.py`` and ``message_card.py``: malformed or unknown messages, one too big
for SQS, and no dead-letter queue at all."""

from __future__ import annotations

from types import ModuleType

import pytest

from support.teams_webhook import LambdaContext, Webhook, dead_letters, log_lines, sns_event

pytestmark = pytest.mark.moto


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Task failed!!! (not JSON)", "malformed_message: the SNS message is not JSON"),
        ('["a", "list"]', "malformed_message: the SNS message is not a JSON object"),
        ('{"schema_version": 1, "kind": "task_exploded"}', "unknown_kind: unknown kind 'task_exploded'"),
        ('{"schema_version": 2, "kind": "task_failed"}', "unknown_kind: unsupported schema_version 2"),
        ('{"hello": "world"}', "unknown_kind: neither an entity-etl event nor an AWS Batch event"),
        (
            '{"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": {"status": "SUCCEEDED"}}',
            "unknown_kind: Batch job state 'SUCCEEDED' is not alerted on",
        ),
    ],
)
def test_malformed_or_unknown_messages_go_to_the_dead_letter_queue(
    teams: str, webhook: Webhook, lam: ModuleType, message: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert webhook.requests == []
    (letter,) = dead_letters(teams)
    assert (letter["message"], letter["reason"]) == (message, reason)
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert error["reason_code"] == reason.split(":")[0]


def test_a_message_too_big_for_sqs_is_dead_lettered_truncated(teams: str, lam: ModuleType) -> None:
    message = '{"kind": "task_failed", "error": "' + '\\"é' * 60_000 + '"}'  # 240 KB; JSON-escaped it is more
    assert len(message.encode()) < 256 * 1024  # SNS takes it
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    (letter,) = dead_letters(teams)
    assert letter["message_truncated"] is True
    assert message.startswith(letter["message"]) and len(letter["message"]) > 100_000
    assert letter["reason_code"] == "unknown_kind"


def test_without_a_dead_letter_queue_the_invocation_fails(
    teams: str, lam: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never dropped silently: Lambda then retries and hands the event to its on-failure destination."""
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    with pytest.raises(RuntimeError, match="could not deliver or dead-letter SNS message"):
        lam.handler(sns_event("not json"), LambdaContext())
