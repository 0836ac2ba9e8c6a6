"""``lambdas/notifications/webhook.py``: the webhook URL from Secrets Manager (moto) and the POST to a local
HTTP server: 429 ``Retry-After``, 5xx and unreachable to the DLQ, a rejected card, the secret's cache."""

from __future__ import annotations

import json
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest

from support.notify_events import SIG
from support.servers import MotoServer, free_port
from support.teams_webhook import (
    LambdaContext,
    Webhook,
    dead_letters,
    log_lines,
    sns_event,
    task_failed_message,
    teams_setup,
)

pytestmark = pytest.mark.moto


def test_429_is_retried_after_retry_after_and_delivered_once(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.answers.append((429, {"Retry-After": "5"}))  # capped at TEAMS_RETRY_AFTER_MAX_S=0.3
    webhook.answers.append((200, {}))
    result = lam.handler(sns_event(task_failed_message(de_dag)), LambdaContext())

    assert result == {"delivered": 1, "dead_lettered": 0}
    first, second = webhook.requests
    assert first["body"] == second["body"]
    assert 0.3 <= second["at"] - first["at"] < 2.0  # waited for Retry-After (capped), not the 0.01 s backoff
    assert dead_letters(teams) == []
    logs = log_lines(capsys)
    assert [line["message"] for line in logs] == ["Teams delivery failed; retrying", "delivered to Teams"]
    assert logs[0]["error"] == "HTTP 429" and logs[0]["delay_s"] == 0.3 and logs[1]["attempt"] == 2


def test_repeated_5xx_goes_to_the_dead_letter_queue(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.answers.extend([(500, {}), (502, {}), (503, {})])
    message = task_failed_message(de_dag)
    result = lam.handler(sns_event(message), LambdaContext())

    assert result == {"delivered": 0, "dead_lettered": 1}
    assert len(webhook.requests) == 3  # TEAMS_MAX_ATTEMPTS
    (letter,) = dead_letters(teams)
    assert letter["message"] == message  # the original, byte for byte
    assert letter["reason_code"] == "delivery_failed"
    assert letter["reason"] == "delivery_failed: HTTP 503 after 3 attempts"
    assert letter["sns_message_id"] == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert "NOT delivered" in error["message"] and error["reason_code"] == "delivery_failed"
    assert (error["kind"], error["entity"]) == ("task_failed", "de")


def test_an_unreachable_webhook_goes_to_the_dead_letter_queue(
    aws: MotoServer,
    lam: ModuleType,
    de_dag: Any,
    airflow_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lam.reset_caches()
    closed = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}/workflows/{SIG}")  # nothing listens there
    dlq = teams_setup(closed, monkeypatch)  # type: ignore[arg-type]
    message = task_failed_message(de_dag)
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    (letter,) = dead_letters(dlq)
    assert letter["message"] == message
    assert letter["reason_code"] == "delivery_failed"
    assert letter["reason"].endswith("after 3 attempts") and "refused" in letter["reason"].lower()
    lines = log_lines(capsys)
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert "NOT delivered" in error["message"]
    assert all(SIG not in json.dumps(line) for line in lines)  # the signed URL is never logged


def test_a_rejected_card_is_not_retried(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None
) -> None:
    webhook.answers.append((400, {}))
    assert lam.handler(sns_event(task_failed_message(de_dag)), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert len(webhook.requests) == 1
    (letter,) = dead_letters(teams)
    assert letter["reason"] == "webhook_rejected: the webhook answered HTTP 400"


def test_missing_webhook_secret_goes_to_the_dead_letter_queue(
    teams: str,
    webhook: Webhook,
    lam: ModuleType,
    de_dag: Any,
    airflow_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TEAMS_WEBHOOK_SECRET_ID", "teams/no-such-secret")
    message = task_failed_message(de_dag)
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert webhook.requests == []
    (letter,) = dead_letters(teams)
    assert letter["message"] == message
    assert letter["reason"] == "webhook_secret_unavailable: secret teams/no-such-secret: ResourceNotFoundException"
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert error["reason_code"] == "webhook_secret_unavailable" and error["request_id"] == LambdaContext.aws_request_id


def test_the_webhook_secret_is_read_once_per_container(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None
) -> None:
    message = task_failed_message(de_dag)
    lam.handler(sns_event(message), LambdaContext())
    boto3.client("secretsmanager").delete_secret(SecretId="teams/entity-etl-webhook", ForceDeleteWithoutRecovery=True)
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 1, "dead_lettered": 0}  # cached
    assert len(webhook.requests) == 2
    lam.reset_caches()  # a new container reads the secret again, and now finds none
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
