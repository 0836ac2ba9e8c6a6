"""The AWS side of the survey demo, all local: a moto server, the survey tables, a CTR stream, Connect.

* DynamoDB and Kinesis: a ``moto_server`` subprocess on a free port of 127.0.0.1 (moto is a dev
  dependency, installed by ``make venv``). Fake credentials, set only in the demo's own process: no
  AWS account is used, and any real credentials in the environment are set aside.
* The tables are created from the repo's own definitions in ``lambdas/survey/infra/tables/``.
* Amazon Connect's ``StartOutboundVoiceContact``, which moto lacks: botocore's ``Stubber`` on the
  handler's own Connect client. It checks each request against the exact parameters expected, and
  answers with the demo's survey-call id. No call is placed.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from demo.survey_traffic import DemoContact

ROOT = Path(__file__).resolve().parents[1]
SURVEY_DIR = ROOT / "lambdas" / "survey"
LABEL = "moto (local AWS emulator, no AWS account used)"
STUB_LABEL = "botocore Stubber (moto has no Amazon Connect outbound calls; no call is placed)"
REGION = "eu-west-2"
STREAM = "connect-ctr"
SUMMARY_TOPIC = "survey-nps"
DEAD_LETTER_QUEUE = "survey-ctr-dead-letters"
# The survey functions' settings (lambdas/survey/README.md, "Configuration"), with demo values.
FUNCTION_ENV = {
    "CONNECT_INSTANCE_ID": "aaaaaaaa-bbbb-cccc-dddd-111111111111",
    "SURVEY_CONTACT_FLOW_ID": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
    "SURVEY_SOURCE_PHONE_NUMBER": "+442079460000",
    "CALLBACK_MARKER_TABLE": "SurveyCallbackMarkers",
    "SURVEY_RESPONSES_TABLE": "SurveyResponses",
    "SURVEY_CUSTOMER_TABLE": "SurveyCustomerInfo",
    "SURVEY_TIMEZONE": "UTC",
}
# Credentials and profiles that would point boto3 at a real account; the demo removes them.
REAL_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """A ``moto_server`` subprocess for the block; yields its endpoint and stops it afterwards."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        raise RuntimeError(f"{binary} not found: moto[server] is a dev dependency, `make venv` installs it")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):  # noqa: S310 - our local server
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {log}") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def use_local_aws(endpoint: str) -> None:
    """Point every boto3 client of this process at the moto server, with fake credentials (and create
    the CTR dead-letter queue there)."""
    for name in REAL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "demo-not-a-key",
            "AWS_SECRET_ACCESS_KEY": "demo-not-a-secret",  # moto accepts anything
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # No ~/.aws files: a developer's profile or SSO settings must not leak into the demo.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **FUNCTION_ENV,
        }
    )
    import boto3  # the demo's other modules import it at their top; here only once the server runs

    # process_ctr_stream's dead-letter queue (CTR_DLQ_URL), on the same server.
    os.environ["CTR_DLQ_URL"] = boto3.client("sqs").create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]


def create_tables(dynamodb: Any) -> list[str]:
    """The survey tables from ``infra/tables/`` (and the markers' TTL setting); returns their names."""
    specs = {p.name: json.loads(p.read_text()) for p in sorted((SURVEY_DIR / "infra" / "tables").glob("*.json"))}
    names = []
    for name, spec in specs.items():
        if not name.endswith(".ttl.json"):
            dynamodb.create_table(**spec)
            names.append(spec["TableName"])
    for name, spec in specs.items():
        if name.endswith(".ttl.json"):
            dynamodb.update_time_to_live(**spec)
    return names


def _sample(name: str) -> dict[str, Any]:
    return dict(json.loads((SURVEY_DIR / "events" / name).read_text()))


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ctr_of(contact: DemoContact) -> dict[str, Any]:
    """The contact's CTR: the documented sample (``events/``) with this contact's fields."""
    ctr = _sample("ctr-inbound-survey-candidate.json")
    ended = contact.ended_at
    started = ended - dt.timedelta(minutes=6)
    ctr.update(
        ContactId=contact.contact_id,
        Attributes={"SurveyCandidate": "True" if contact.opted_in else "False", "Language": "en-GB"},
        CustomerEndpoint={"Address": contact.phone, "Type": "TELEPHONE_NUMBER"},
        InitiationTimestamp=_iso(started),
        ConnectedToSystemTimestamp=_iso(started + dt.timedelta(seconds=1)),
        DisconnectTimestamp=_iso(ended),
        LastUpdateTimestamp=_iso(ended + dt.timedelta(seconds=20)),
    )
    ctr["Queue"] = {**ctr["Queue"], "Name": contact.queue}
    ctr["Queue"].update(EnqueueTimestamp=_iso(started + dt.timedelta(seconds=8)))
    if contact.agent is None:
        ctr.update(Agent=None, AgentConnectionAttempts=0, DisconnectReason="CUSTOMER_DISCONNECT")
        ctr["Queue"]["DequeueTimestamp"] = _iso(ended)
    else:
        answered = started + dt.timedelta(seconds=40)
        ctr["Agent"] = {**ctr["Agent"], "Username": contact.agent, "ConnectedToAgentTimestamp": _iso(answered)}
        ctr["Agent"].update(AfterContactWorkStartTimestamp=_iso(ended), AfterContactWorkEndTimestamp=_iso(ended))
        ctr["Queue"]["DequeueTimestamp"] = _iso(answered)
    return ctr


def rating_event(contact: DemoContact, key: str) -> dict[str, Any]:
    """The survey flow's invocation of ``update_survey_result``: the documented sample, this call's fields."""
    event = _sample("contact-flow-update-survey-result.json")
    data = event["Details"]["ContactData"]
    data.update(
        ContactId=contact.survey_contact_id,
        InitialContactId=contact.survey_contact_id,
        PreviousContactId=contact.survey_contact_id,
        CustomerEndpoint={"Address": contact.phone, "Type": "TELEPHONE_NUMBER"},
        Attributes=survey_call_attributes(contact),
    )
    event["Details"]["Parameters"] = {"SurveyResponse": key}
    return event


def survey_call_attributes(contact: DemoContact) -> dict[str, str]:
    """What ``process_ctr_stream`` puts on the survey call (and the survey flow hands back)."""
    attributes = {"OriginalContactID": contact.contact_id, "SurveyCall": "True", "OriginalQueue": contact.queue}
    if contact.agent:
        attributes["OriginalAgent"] = contact.agent
    return attributes


def expect_survey_call(stubber: Any, contact: DemoContact) -> None:
    """Queue Connect's answer to the one call this contact is due, with the exact request it must be."""
    request = {
        "InstanceId": FUNCTION_ENV["CONNECT_INSTANCE_ID"],
        "ContactFlowId": FUNCTION_ENV["SURVEY_CONTACT_FLOW_ID"],
        "DestinationPhoneNumber": contact.phone,
        "ClientToken": f"survey-{contact.contact_id}",
        "Attributes": survey_call_attributes(contact),
        "SourcePhoneNumber": FUNCTION_ENV["SURVEY_SOURCE_PHONE_NUMBER"],
    }
    stubber.add_response("start_outbound_voice_contact", {"ContactId": contact.survey_contact_id}, request)


class CtrStream:
    """A Kinesis stream on moto; each delivery is a Lambda event built from what ``GetRecords`` returns,
    in the shape of ``events/kinesis-ctr-batch.json``, as the event source mapping builds it."""

    def __init__(self, kinesis: Any) -> None:
        self.kinesis = kinesis
        kinesis.create_stream(StreamName=STREAM, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.2})
        summary = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
        self.arn = summary["StreamARN"]
        self.shard = kinesis.list_shards(StreamName=STREAM)["Shards"][0]["ShardId"]
        self.iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=self.shard, ShardIteratorType="LATEST")[
            "ShardIterator"
        ]
        self.template = _sample("kinesis-ctr-batch.json")["Records"][0]

    def deliver(self, ctrs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Put the CTRs on the stream and read them back as one Lambda event."""
        self.kinesis.put_records(
            StreamName=STREAM,
            Records=[{"Data": json.dumps(ctr).encode(), "PartitionKey": ctr["ContactId"]} for ctr in ctrs],
        )
        page = self.kinesis.get_records(ShardIterator=self.iterator)
        self.iterator = page["NextShardIterator"]
        records = []
        for record in page["Records"]:
            event_record = copy.deepcopy(self.template)
            event_record["kinesis"].update(
                partitionKey=record["PartitionKey"],
                sequenceNumber=record["SequenceNumber"],
                data=base64.b64encode(record["Data"]).decode(),
                approximateArrivalTimestamp=record["ApproximateArrivalTimestamp"].timestamp(),
            )
            event_record.update(
                eventID=f"{self.shard}:{record['SequenceNumber']}", eventSourceArn=self.arn, awsRegion=REGION
            )
            records.append(event_record)
        if len(records) != len(ctrs):
            raise RuntimeError(f"put {len(ctrs)} CTRs on {STREAM} but read back {len(records)}")
        return {"Records": records}


class SummaryTap:
    """The NPS DAG's summary topic on moto, with an SQS queue subscribed to read the events back."""

    def __init__(self, sns: Any, sqs: Any) -> None:
        self.sqs = sqs
        self.topic_arn = sns.create_topic(Name=SUMMARY_TOPIC)["TopicArn"]
        self.queue_url = sqs.create_queue(QueueName=f"{SUMMARY_TOPIC}-tap")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=attributes["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )

    def drain(self) -> list[dict[str, Any]]:
        """Every event published so far (moto delivers to the queue as it publishes)."""
        events = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return events
