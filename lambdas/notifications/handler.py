"""Teams notifications: SNS -> this Lambda -> a Microsoft Teams Workflows webhook.

Every SNS record carries one JSON message, either

* an event of the Airflow notifier (``schema_version`` 1; ``kind`` ``task_failed``,
  ``dag_run_failed``, ``run_succeeded`` or ``run_too_long``), or
* an EventBridge event from AWS Batch (``source`` ``aws.batch``): ``Batch Job State Change`` with
  status ``FAILED``, or ``Batch Job Queue Blocked``,

and becomes one Adaptive Card (version 1.4) in the message envelope that Teams Workflows webhooks
accept, POSTed with the standard library. HTTP 429 is retried after ``Retry-After`` (capped), 5xx and
network errors with bounded exponential backoff. A message that cannot be delivered — malformed, of
an unknown kind, no webhook secret, rejected, or still failing after the retries — is sent to the
dead-letter SQS queue with the original message and the reason, and logged as an error. So is an
invocation event that is not an SNS event, or a record of it that is not an SNS record
(``malformed_event``, the raw event or record kept). If even that send fails, the invocation fails,
so Lambda's own retries and on-failure destination take over: nothing is dropped silently.

Environment:

=========================  ===================================================  =========
``TEAMS_WEBHOOK_SECRET_ID``  Secrets Manager secret: the webhook URL, plain or   required
                             ``{"webhook_url": "..."}``; read once per container
``DEAD_LETTER_QUEUE_URL``    SQS queue for undeliverable messages                required
``TEAMS_MAX_ATTEMPTS``       POST attempts per message                           5
``TEAMS_RETRY_BASE_S``       first backoff delay, doubled per attempt            1
``TEAMS_RETRY_MAX_S``        longest backoff delay                               20
``TEAMS_RETRY_AFTER_MAX_S``  longest wait a ``Retry-After`` may ask for           30
``TEAMS_HTTP_TIMEOUT_S``     timeout of one POST                                 10
``LOG_LEVEL``                                                                    INFO
=========================  ===================================================  =========

Depends on the standard library and boto3 (in the Lambda runtime) only: no Airflow, no entity_etl.
Logs are JSON lines. The webhook URL (it carries a signature) and message bodies are never logged.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import importlib.util
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus, urlsplit

import boto3

KINDS = ("task_failed", "dag_run_failed", "run_succeeded", "run_too_long")
BATCH_FAILED = "Batch Job State Change"
BATCH_BLOCKED = "Batch Job Queue Blocked"
DEFAULT_BATCH_LOG_GROUP = "/aws/batch/job"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_FACT_CHARS = 600
MAX_NOTE_CHARS = 2000
MAX_URL_CHARS = 2000
#: Teams webhooks (Workflows and incoming webhooks) reject a message over about 28 KB; the card's JSON
#: body, as POSTed, is kept under this many bytes by truncating the longest values.
MAX_CARD_BYTES = 27_000
TRUNCATED = "… (truncated; the full text is in the run's log)"
MAX_DLQ_BODY_BYTES = 256 * 1024 - 2048  # an SQS message body is at most 256 KiB; room for attributes


# -- structured logs ------------------------------------------------------------------------------
class JsonLineHandler(logging.Handler):
    """One JSON object per line on stdout (CloudWatch Logs keeps each line as one event).

    Hand-written rather than AWS Lambda Powertools' Logger: it is the only piece of Powertools this
    function would use, and it keeps the function free of a layer or a bundled dependency. It looks
    ``sys.stdout`` up on every record, so it works whatever the function's LoggingConfig is.
    """

    def emit(self, record: logging.LogRecord) -> None:
        line: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        try:
            sys.stdout.write(json.dumps(line, default=str) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


LOG = logging.getLogger("teams_notifications")
if not LOG.handlers:
    LOG.addHandler(JsonLineHandler())
    LOG.propagate = False  # the runtime's root handler would print every line a second time
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def log(level: int, message: str, **fields: Any) -> None:
    LOG.log(level, message, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


# -- configuration and clients --------------------------------------------------------------------
def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


_clients: dict[str, Any] = {}
_webhook_cache: dict[str, str] = {}


def reset_caches() -> None:
    """Forget the cached clients and webhook URL (a new container, as far as this module knows)."""
    _clients.clear()
    _webhook_cache.clear()


def _client(service: str) -> Any:
    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


class Undeliverable(Exception):
    """The message cannot be delivered; ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url
    raise Undeliverable("webhook_secret_invalid", "the secret is not an https URL")


def webhook_url() -> str:
    """The webhook URL from Secrets Manager, read once per container (and again after a 401/403/404)."""
    secret_id = os.environ.get("TEAMS_WEBHOOK_SECRET_ID")
    if not secret_id:
        raise Undeliverable("webhook_secret_unavailable", "TEAMS_WEBHOOK_SECRET_ID is not set")
    if secret_id in _webhook_cache:
        return _webhook_cache[secret_id]
    try:
        value = _client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString") or ""
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        raise Undeliverable("webhook_secret_unavailable", f"secret {secret_id}: {code}") from None
    value = value.strip()
    if value.startswith("{"):
        try:
            document = json.loads(value)
        except ValueError:
            raise Undeliverable("webhook_secret_invalid", f"secret {secret_id} is not valid JSON") from None
        value = str(document.get("webhook_url") or document.get("url") or "") if isinstance(document, dict) else ""
    if not value:
        raise Undeliverable("webhook_secret_invalid", f"secret {secret_id} holds no webhook URL")
    _webhook_cache[secret_id] = _check_webhook_url(value)
    return _webhook_cache[secret_id]


# -- delivery -------------------------------------------------------------------------------------
def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def post_card(
    url: str,
    payload: Mapping[str, Any],
    *,
    message_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    time_left_s: Callable[[], float] | None = None,
) -> int:
    """POST ``payload``; return the number of attempts it took. Raises :class:`Undeliverable`."""
    max_attempts = max(1, int(_float_env("TEAMS_MAX_ATTEMPTS", 5)))
    base = _float_env("TEAMS_RETRY_BASE_S", 1.0)
    longest = _float_env("TEAMS_RETRY_MAX_S", 20.0)
    retry_after_cap = _float_env("TEAMS_RETRY_AFTER_MAX_S", 30.0)
    timeout = _float_env("TEAMS_HTTP_TIMEOUT_S", 10.0)
    body = json.dumps(payload).encode("utf-8")
    last = "no attempt"
    for attempt in range(1, max_attempts + 1):
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked (https, or http to loopback)
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        delay = min(longest, base * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
                status = response.status
            log(logging.INFO, "delivered to Teams", message_id=message_id, status=status, attempt=attempt)
            return attempt
        except urllib.error.HTTPError as exc:
            status = exc.code
            last = f"HTTP {status}"
            if status == 429:
                asked = _retry_after_s(exc.headers.get("Retry-After") if exc.headers else None)
                delay = min(retry_after_cap, asked) if asked is not None else delay
            elif status < 500:
                if status in (401, 403, 404):
                    _webhook_cache.clear()  # a rotated or deleted webhook: read the secret again next time
                raise Undeliverable("webhook_rejected", f"the webhook answered HTTP {status}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(exc).__name__}: {type(reason).__name__ if not isinstance(reason, str) else reason}"
        if attempt == max_attempts:
            break
        if time_left_s is not None and time_left_s() < delay + timeout + 1:
            raise Undeliverable("delivery_failed", f"{last}; not enough time left for attempt {attempt + 1}")
        log(
            logging.WARNING,
            "Teams delivery failed; retrying",
            message_id=message_id,
            error=last,
            attempt=attempt,
            delay_s=round(delay, 3),
        )
        sleep(delay)
    raise Undeliverable("delivery_failed", f"{last} after {max_attempts} attempts")


def dead_letter(raw_message: str, reason: Undeliverable, record: Mapping[str, Any]) -> str:
    """Send the original message and the reason to the dead-letter queue; return the SQS message id."""
    queue_url = os.environ.get("DEAD_LETTER_QUEUE_URL")
    if not queue_url:
        raise RuntimeError("DEAD_LETTER_QUEUE_URL is not set: cannot keep an undeliverable message")
    sns = record.get("Sns")
    sns = sns if isinstance(sns, Mapping) else {}
    message, truncated = raw_message, False
    while True:
        body = json.dumps(
            {
                "reason": str(reason),
                "reason_code": reason.code,
                "message": message,
                "message_truncated": truncated,
                "sns_message_id": sns.get("MessageId"),
                "topic_arn": sns.get("TopicArn"),
                "sns_timestamp": sns.get("Timestamp"),
                "dead_lettered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            ensure_ascii=False,
        )
        if len(body.encode("utf-8")) <= MAX_DLQ_BODY_BYTES:
            break
        # An SNS message may be 256 KiB and JSON-escaping it can make it longer: keep as much as fits.
        message, truncated = message[: len(message) * 3 // 4], True
    response = _client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={"reason_code": {"DataType": "String", "StringValue": reason.code}},
    )
    return str(response["MessageId"])


# -- cards ----------------------------------------------------------------------------------------
def _load_redact() -> Callable[[str], str]:
    """The runtime's one redaction function, ``redaction.py`` next to this file.

    The Lambda zip carries a copy of ``plugins/entity_etl/runtime/redaction.py`` (see
    ``deploy/cloudformation/package_lambdas.py``); in the repository it is a symlink to it.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "redaction.py")
    spec = importlib.util.spec_from_file_location("teams_notifications_redaction", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    redact_function: Callable[[str], str] = module.redact
    return redact_function


redact = _load_redact()

# Adaptive Card TextBlock and FactSet text is a Markdown subset (bold, italic, lists, links); Teams
# renders more (code, strike-through, quotes, headings). Every value from data or errors is
# backslash-escaped, so a value shows as it is and cannot format, link or break the card.
_MARKDOWN_INLINE = re.compile(r"([\\`*_~\[\]()<>#|{}!])")
_MARKDOWN_LINE_START = re.compile(r"(?m)^(\s*)([-+=]|\d+(?=[.)]))")


def escape_markdown(text: str) -> str:
    """``text`` with its Markdown characters (and leading list markers) backslash-escaped."""
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)

    def marker(match: re.Match[str]) -> str:  # "1." -> "1\.", "- " -> "\- "
        indent, mark = match.groups()
        return indent + (mark + "\\" if mark.isdigit() else "\\" + mark)

    return _MARKDOWN_LINE_START.sub(marker, text)


def _text(value: Any, limit: int = MAX_FACT_CHARS) -> str:
    """A value from data or an error, as card text: redacted, then cut to ``limit``, then escaped."""
    text = redact(str(value))
    if len(text) <= limit:
        return escape_markdown(text)
    return escape_markdown(text[: max(limit - len(TRUNCATED), 1)]) + TRUNCATED


def _facts(pairs: list[tuple[str, Any]], limit: int = MAX_FACT_CHARS) -> dict[str, Any]:
    return {
        "type": "FactSet",
        "facts": [{"title": title, "value": _text(value, limit)} for title, value in pairs if value not in (None, "")],
    }


def _open_url(title: str, url: Any) -> dict[str, Any] | None:
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or urlsplit(url).scheme not in ("https", "http"):
        return None
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def card_message(
    title: str, color: str, facts: list[tuple[str, Any]], actions: list[dict[str, Any] | None], note: str | None = None
) -> dict[str, Any]:
    """The Teams Workflows webhook message: one Adaptive Card 1.4 in a ``message`` envelope.

    Every value is redacted and Markdown-escaped; values are cut (with :data:`TRUNCATED`) to keep
    the JSON as POSTed under :data:`MAX_CARD_BYTES`, halving the limit until the card fits.
    """
    limit, note_limit = MAX_FACT_CHARS, MAX_NOTE_CHARS
    while True:
        message = _card(title, color, facts, actions, note, limit, note_limit)
        if len(json.dumps(message).encode("utf-8")) <= MAX_CARD_BYTES or limit <= 2 * len(TRUNCATED):
            return message
        limit, note_limit = limit // 2, note_limit // 2


def _card(
    title: str,
    color: str,
    facts: list[tuple[str, Any]],
    actions: list[dict[str, Any] | None],
    note: str | None,
    limit: int,
    note_limit: int,
) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _text(title, 200),
            "weight": "Bolder",
            "size": "Medium",
            "color": color,
            "wrap": True,
        },
        _facts(facts, limit),
    ]
    if note:
        body.append(
            {
                "type": "TextBlock",
                "text": _text(note, note_limit),
                "wrap": True,
                "fontType": "Monospace",
                "size": "Small",
            }
        )
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
        "actions": [a for a in actions if a is not None],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}],
    }


def _console_domain(arn: str | None) -> str:
    partition = (arn or "arn:aws:").split(":")[1] if (arn or "").startswith("arn:") else "aws"
    return {"aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}.get(
        partition, "console.aws.amazon.com"
    )


def cloudwatch_log_url(region: str, log_group: str, log_stream: str, arn: str | None = None) -> str:
    # The same console address the amazon provider's CloudWatchEventsLink builds (this function cannot
    # import Airflow).
    return (
        f"https://{_console_domain(arn)}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"{quote_plus(log_group)}/log-events/{quote_plus(log_stream)}"
    )


def _arn_name(arn: Any) -> Any:
    return arn.rsplit("/", 1)[-1] if isinstance(arn, str) and "/" in arn else arn


def _command_arg(command: Any, flag: str) -> str | None:
    """``--entity de`` and friends from the stage job's command (``etlctl run-stage ...``)."""
    if isinstance(command, list) and flag in command:
        index = command.index(flag)
        if index + 1 < len(command):
            return str(command[index + 1])
    return None


def _airflow_card(message: Mapping[str, Any]) -> dict[str, Any]:
    kind = message["kind"]
    name = message.get("entity") or message.get("dag_id") or "?"
    where = message.get("stage") or message.get("task_id")
    title, color = {
        "task_failed": (f"❌ {name}: {where} failed", "Attention"),
        "dag_run_failed": (f"❌ {name}: run failed" + (f" at {where}" if where else ""), "Attention"),
        "run_succeeded": (f"✅ {name}: run succeeded", "Good"),
        "run_too_long": (f"⏰ {name}: run is taking too long", "Warning"),
    }[kind]
    error = message.get("error") or {}
    error_text = ": ".join(str(p) for p in (error.get("type"), error.get("message")) if p) if error else None
    interval = message.get("data_interval") or {}
    batch = message.get("batch") or {}
    tries = None
    if message.get("try_number") is not None:
        tries = f"{message['try_number']}" + (
            f" of {int(message['max_tries']) + 1}" if message.get("max_tries") is not None else ""
        )
    facts: list[tuple[str, Any]] = [
        ("Entity", message.get("entity")),
        ("Stage", where),
        ("DAG", message.get("dag_id")),
        ("Run", message.get("run_id")),
        ("Data interval", f"{interval.get('start')} → {interval.get('end')}" if interval.get("start") else None),
        ("Try", tries),
        ("Error", error_text),
        ("Reason", message.get("reason")),
    ]
    if batch:
        facts += [
            ("Batch job", batch.get("jobName") or batch.get("jobId")),
            ("Batch status", batch.get("statusReason")),
            ("Exit code", batch.get("exitCode")),
            ("Container", batch.get("containerReason")),
        ]
    deadline = message.get("deadline") or {}
    if kind == "run_too_long":
        facts += [("Queued at", deadline.get("queued_at")), ("Deadline", deadline.get("deadline_time"))]
    summary = message.get("summary") or {}
    if kind == "run_succeeded":
        counts = summary.get("row_counts") or {}
        facts += [(f"Rows {k.replace('_', ' ')}", v) for k, v in counts.items()]
        if summary.get("duration_s") is not None:
            facts.append(("Duration", f"{float(summary['duration_s']):.0f} s"))
    facts.append(("Source", message.get("source")))
    actions = [
        _open_url("Open in Airflow", message.get("airflow_url")),
        _open_url("Airflow run", message.get("airflow_run_url"))
        if message.get("airflow_run_url") != message.get("airflow_url")
        else None,
        _open_url("CloudWatch logs", message.get("cloudwatch_log_url") or batch.get("logUrl")),
        _open_url("Batch job", batch.get("jobUrl")),
    ]
    return card_message(title, color, facts, actions)


def _batch_card(event: Mapping[str, Any]) -> dict[str, Any]:
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise Undeliverable("malformed_message", "the EventBridge event has no detail")
    kind = event.get("detail-type")
    region = str(event.get("region") or "")
    job_arn = detail.get("jobArn")
    job_id = detail.get("jobId")
    queue_arn = detail.get("jobQueue")
    container = detail.get("container") or {}
    attempts = detail.get("attempts") or []
    last_attempt = (attempts[-1].get("container") or {}) if attempts else {}
    command = container.get("command")
    domain = _console_domain(job_arn or queue_arn)
    job_url = f"https://{domain}/batch/home?region={region}#jobs/detail/{job_id}" if job_id else None
    common: list[tuple[str, Any]] = [
        ("Entity", _command_arg(command, "--entity")),
        ("Stage", _command_arg(command, "--stage")),
        ("Run", _command_arg(command, "--run-id")),
        ("Job", detail.get("jobName")),
        ("Job queue", _arn_name(queue_arn)),
    ]
    if kind == BATCH_FAILED:
        if detail.get("status") != "FAILED":
            raise Undeliverable("unknown_kind", f"Batch job state {detail.get('status')!r} is not alerted on")
        stream = container.get("logStreamName") or last_attempt.get("logStreamName")
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group") or DEFAULT_BATCH_LOG_GROUP
        log_region = options.get("awslogs-region") or region
        exit_code = container.get("exitCode", last_attempt.get("exitCode"))
        facts = [
            *common,
            ("Status reason", detail.get("statusReason")),
            ("Exit code", exit_code),
            ("Container", container.get("reason") or last_attempt.get("reason")),
            ("Attempts", len(attempts) or None),
            ("Region", region),
        ]
        actions = [
            _open_url("CloudWatch logs", cloudwatch_log_url(log_region, group, stream, job_arn) if stream else None),
            _open_url("Batch job", job_url),
        ]
        return card_message(f"❌ AWS Batch job failed: {detail.get('jobName')}", "Attention", facts, actions)
    queue_url = f"https://{domain}/batch/home?region={region}#queues/detail/{queue_arn}" if queue_arn else None
    facts = [
        *common,
        ("Status", detail.get("status")),
        ("Blocked because", detail.get("statusReason")),
        ("Region", region),
    ]
    actions = [_open_url("Job queue", queue_url), _open_url("Batch job", job_url)]
    return card_message(f"⚠️ AWS Batch job queue blocked: {_arn_name(queue_arn)}", "Warning", facts, actions)


def build_card(raw_message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(card message, log fields) for one SNS message. Raises :class:`Undeliverable` when it is unusable."""
    try:
        message = json.loads(raw_message)
    except (TypeError, ValueError):
        raise Undeliverable("malformed_message", "the SNS message is not JSON") from None
    if not isinstance(message, dict):
        raise Undeliverable("malformed_message", "the SNS message is not a JSON object")
    if message.get("source") == "aws.batch" and "detail-type" in message:
        kind = message["detail-type"]
        if kind not in (BATCH_FAILED, BATCH_BLOCKED):
            raise Undeliverable("unknown_kind", f"unhandled AWS Batch event {kind!r}")
        detail = message.get("detail") if isinstance(message.get("detail"), dict) else {}
        return _batch_card(message), {"kind": kind, "job_id": detail.get("jobId")}
    if "kind" in message or "schema_version" in message:
        if message.get("schema_version") != 1:
            raise Undeliverable("unknown_kind", f"unsupported schema_version {message.get('schema_version')!r}")
        if message.get("kind") not in KINDS:
            raise Undeliverable("unknown_kind", f"unknown kind {message.get('kind')!r}")
        try:
            card = _airflow_card(message)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise Undeliverable("malformed_message", f"{message['kind']} event: {type(exc).__name__}") from None
        return card, {"kind": message["kind"], "entity": message.get("entity"), "event_id": message.get("event_id")}
    raise Undeliverable("unknown_kind", "neither an entity-etl event nor an AWS Batch event")


# -- the handler ----------------------------------------------------------------------------------
def _as_json(value: Any) -> str:
    """Any part of an invocation event, as JSON text for the dead-letter queue (never raises)."""
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. a circular structure: no Lambda event is one, but keep it
        return repr(value)


def _sns_message(record: Any, index: int) -> tuple[str, str | None]:
    """(message text, SNS message id) of one record. Raises :class:`Undeliverable` for a non-SNS record."""
    if not isinstance(record, Mapping):
        raise Undeliverable("malformed_event", f"record {index} is a {type(record).__name__}, not an SNS record")
    sns = record.get("Sns")
    if not isinstance(sns, Mapping):
        source = record.get("EventSource") or record.get("eventSource")
        raise Undeliverable(
            "malformed_event",
            f"record {index} has no Sns section (event source {source!r}): not an SNS record",
        )
    message_id = sns.get("MessageId")
    raw = sns.get("Message")
    return (raw if isinstance(raw, str) else json.dumps(raw)), (str(message_id) if message_id is not None else None)


def _envelope_problem(event: Any) -> str:
    """Why an invocation event is not an SNS event (one with a ``Records`` list)."""
    if not isinstance(event, Mapping):
        return f"the invocation event is a {type(event).__name__}, not an SNS event"
    if "detail-type" in event and "source" in event:
        return (
            "an EventBridge event delivered straight to the function, not through the SNS topic "
            "(the rules must target the topic)"
        )
    if "Records" in event:
        return f"the invocation event's Records is a {type(event['Records']).__name__}, not a list"
    return "the invocation event has no Records: not an SNS event"


def _dead_letter_envelope(event: Any, request_id: str | None) -> dict[str, int]:
    """A whole invocation event that is not an SNS event: log it and dead-letter it as it came."""
    reason = Undeliverable("malformed_event", _envelope_problem(event))
    keys = sorted(str(k) for k in event)[:20] if isinstance(event, Mapping) else None
    log(
        logging.ERROR,
        "invocation event is NOT an SNS event (malformed_event): nothing delivered to Teams; "
        "sending the whole event to the dead-letter queue",
        reason=reason.detail,
        reason_code=reason.code,
        event_type=type(event).__name__,
        event_keys=keys,
        request_id=request_id,
    )
    try:
        dlq_id = dead_letter(_as_json(event), reason, {})
    except Exception as exc:
        log(
            logging.ERROR,
            "invocation event LOST unless Lambda retries: the dead-letter queue refused it",
            error=f"{type(exc).__name__}: {exc}",
            request_id=request_id,
        )
        raise RuntimeError("could not dead-letter a malformed invocation event (not an SNS event)") from None
    log(logging.INFO, "dead-lettered", dlq_message_id=dlq_id, reason_code=reason.code, request_id=request_id)
    return {"delivered": 0, "dead_lettered": 1}


def handler(event: Any, context: Any = None) -> dict[str, int]:
    """SNS-triggered entry point: deliver each record's message, or dead-letter it.

    An event that is not an SNS event (no ``Records`` list: an EventBridge event delivered straight
    to the function, a test invocation with ``{}``) is dead-lettered whole as ``malformed_event``. Each
    record is read inside its own protection, so one record that is not an SNS record is dead-lettered
    (``malformed_event``) without failing the invocation, and the other records are not sent twice.
    """
    request_id = getattr(context, "aws_request_id", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    time_left_s = (lambda: remaining() / 1000.0) if callable(remaining) else None
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        return _dead_letter_envelope(event, request_id)
    delivered = dead_lettered = 0
    failures: list[str] = []
    for index, record in enumerate(records):
        raw: str | None = None
        message_id: str | None = None
        fields: dict[str, Any] = {}
        try:
            raw, message_id = _sns_message(record, index)
            card, fields = build_card(raw)
            post_card(webhook_url(), card, message_id=message_id, time_left_s=time_left_s)
            delivered += 1
        except Exception as exc:
            # Undeliverable says why; anything else is a bug here, named by its type only (its text
            # could quote the message).
            reason = exc if isinstance(exc, Undeliverable) else Undeliverable("internal_error", type(exc).__name__)
            if raw is None:  # the record itself could not be read: keep all of it
                raw = _as_json(record)
            log(
                logging.ERROR,
                f"notification NOT delivered to Teams ({reason.code}); sending it to the dead-letter queue",
                reason=reason.detail,
                reason_code=reason.code,
                message_id=message_id,
                record_index=index,
                request_id=request_id,
                **fields,
            )
            try:
                dlq_id = dead_letter(raw, reason, record if isinstance(record, Mapping) else {})
            except Exception as exc:
                log(
                    logging.ERROR,
                    "notification LOST unless Lambda retries: the dead-letter queue refused it",
                    error=f"{type(exc).__name__}: {exc}",
                    message_id=message_id,
                    record_index=index,
                    request_id=request_id,
                )
                failures.append(message_id or f"(record {index})")
                continue
            dead_lettered += 1
            log(logging.INFO, "dead-lettered", message_id=message_id, dlq_message_id=dlq_id, reason_code=reason.code)
    if failures:
        # Fail the invocation: Lambda retries it, then hands it to the function's on-failure destination.
        raise RuntimeError(f"could not deliver or dead-letter SNS message(s) {', '.join(failures)}")
    return {"delivered": delivered, "dead_lettered": dead_lettered}
