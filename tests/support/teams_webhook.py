"""The Teams Lambda's test harness: a local HTTP server standing in for the Workflows webhook, the
Lambda's environment on moto (secret, DLQ), SNS invocation events and readers of the posted cards."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from entity_etl.orchestration.notifier import (
    build_event,
)
from support.notify_events import LAMBDA_DIR, REGION, RUN_ID, SIG, TaskInstance, context, drain


class Webhook:
    """A local HTTP server standing in for the Teams Workflows webhook: records requests, answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: deque[tuple[int, dict[str, str]]] = deque()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                webhook.requests.append(
                    {"at": time.monotonic(), "path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers = webhook.answers.popleft() if webhook.answers else (202, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/workflows/entity-etl/triggers/manual/paths/invoke?sig={SIG}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def teams_setup(webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> str:
    """The webhook secret and the DLQ in (moto) AWS, the Lambda's environment; returns the DLQ URL."""
    boto3.client("secretsmanager").create_secret(
        Name="teams/entity-etl-webhook", SecretString=json.dumps({"webhook_url": webhook.url})
    )
    dlq = boto3.client("sqs").create_queue(QueueName="teams-notifications-dlq")["QueueUrl"]
    for name, value in {
        "TEAMS_WEBHOOK_SECRET_ID": "teams/entity-etl-webhook",
        "DEAD_LETTER_QUEUE_URL": dlq,
        "TEAMS_MAX_ATTEMPTS": "3",
        "TEAMS_RETRY_BASE_S": "0.01",
        "TEAMS_RETRY_MAX_S": "0.02",
        "TEAMS_RETRY_AFTER_MAX_S": "0.3",
        "TEAMS_HTTP_TIMEOUT_S": "5",
    }.items():
        monkeypatch.setenv(name, value)
    return dlq


@dataclass
class LambdaContext:
    aws_request_id: str = "3f0c2a44-1b6e-4d7a-9c1e-5a2b7d9e8f10"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def sns_event(message: str, message_id: str = "95df01b4-ee98-5cb9-9903-4c221d41eb5e") -> dict[str, Any]:
    """The event SNS invokes a subscribed Lambda with."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"arn:aws:sns:{REGION}:123456789012:etl-notifications:2bcfbf39",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": f"arn:aws:sns:{REGION}:123456789012:etl-notifications",
                    "Subject": None,
                    "Message": message,
                    "Timestamp": "2026-11-03T00:42:11.000Z",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def card_content(request: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card of a recorded webhook request, after checking the Teams message envelope."""
    assert request["headers"]["Content-Type"] == "application/json"
    message = json.loads(request["body"])
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content: dict[str, Any] = attachment["content"]
    assert content["type"] == "AdaptiveCard" and content["version"] == "1.4"
    return content


def unescape(text: str) -> str:
    """A card value as Teams shows it: the handler backslash-escapes Markdown characters."""
    return re.sub(r"\\(.)", r"\1", text)


def facts(content: dict[str, Any]) -> dict[str, str]:
    (fact_set,) = [block for block in content["body"] if block["type"] == "FactSet"]
    return {fact["title"]: unescape(fact["value"]) for fact in fact_set["facts"]}


def actions(content: dict[str, Any]) -> dict[str, str]:
    assert all(action["type"] == "Action.OpenUrl" for action in content["actions"])
    return {action["title"]: action["url"] for action in content["actions"]}


def dead_letters(dlq: str) -> list[dict[str, Any]]:
    return [m["body"] for m in drain(dlq)]


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    assert SIG not in out  # the webhook URL's signature never reaches a log
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def task_failed_message(de_dag: Any) -> str:
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=3, max_tries=2)
    event = build_event("task_failed", context(de_dag, ti, exception=OSError("source unreachable")), entity="de")
    return json.dumps(event)


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((LAMBDA_DIR / "events" / f"{name}.json").read_text()))
