"""The survey call-back handler's time per 100-record Kinesis batch, against a moto server.

What it does, in one run:

1. starts a moto server (``tests/support/servers.py``) and creates the survey tables from
   ``lambdas/survey/infra/tables/``, with the function's environment pointing at them;
2. stubs Amazon Connect's ``StartOutboundVoiceContact`` with botocore's ``Stubber`` (moto lacks it),
   so a "call" costs only the stub;
3. times ``process_ctr_stream.handler`` on ``--batches`` batches of ``--batch-size`` CTRs in the
   documented Kinesis event shape, for each scenario:

   * ``opted in, new``: every CTR is a new opted-in contact: one marker write (IN_PROGRESS), one call
     and one marker update (COMPLETED) per record;
   * ``redelivered``: the same batches again: each record finds its COMPLETED marker (one write
     attempt, refused, returning the old item), and no call is placed;
   * ``not opted in``: no survey candidate in the batch: decode, decide and log only, no AWS call;
   * ``10% opted in``: a plausible mix;

4. prints, per scenario, the median / min / max milliseconds per batch and per record, the DynamoDB
   requests per record, the time spent inside them (botocore's ``before-send`` to ``after-call``),
   and the handler's own time: the rest (decoding, deciding, Powertools, logging, botocore's request
   building and signing, the stubbed call). The median round trip of one plain ``PutItem`` to the same server is printed beside them.

One unmeasured batch runs first (imports, clients, connection pool). The handler logs at INFO as in
production; its lines go to /dev/null. moto is much slower than DynamoDB (a round trip here is a few
milliseconds, and more for a conditional write), so the handler's own time is the figure that carries
over to Lambda; the rest scales with DynamoDB's latency.

Run: ``uv run --frozen --all-extras python bench/survey_handler.py [--batches 5] [--batch-size 100]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.servers import start_moto  # noqa: E402

SURVEY = ROOT / "lambdas" / "survey"
REGION = "eu-west-2"


@contextlib.contextmanager
def quiet() -> Any:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


class Context:
    aws_request_id = "bench"
    function_name = "survey-process-ctr-stream"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def ctr(opted_in: bool) -> dict[str, Any]:
    record = json.loads((SURVEY / "events" / "ctr-inbound-survey-candidate.json").read_text())
    record["ContactId"] = str(uuid.uuid4())
    record["DisconnectTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record["Attributes"] = {"SurveyCandidate": "True"} if opted_in else {"Language": "en-GB"}
    return record


def batch(size: int, opted_in_every: int | None, first_sequence: int) -> tuple[dict[str, Any], int]:
    """A Kinesis event of ``size`` CTRs (every ``opted_in_every``-th opted in); and how many are."""
    template = json.loads((SURVEY / "events" / "kinesis-ctr-batch.json").read_text())["Records"][0]
    records, opted = [], 0
    for i in range(size):
        wanted = opted_in_every is not None and i % opted_in_every == 0
        opted += wanted
        body = ctr(wanted)
        record = copy.deepcopy(template)
        sequence = str(49656953312312473960283418730158219087435362713217302530 + first_sequence + i)
        record["kinesis"].update(
            partitionKey=body["ContactId"],
            sequenceNumber=sequence,
            data=base64.b64encode(json.dumps(body).encode()).decode(),
            approximateArrivalTimestamp=time.time(),
        )
        record["eventID"] = f"shardId-000000000000:{sequence}"
        records.append(record)
    return {"Records": records}, opted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=5, help="measured batches per scenario")
    parser.add_argument("--batch-size", type=int, default=100, help="records per Kinesis batch")
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="survey-bench-"))
    moto = start_moto(work)
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=moto.endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - a fake credential for moto
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            CONNECT_INSTANCE_ID="aaaaaaaa-bbbb-cccc-dddd-111111111111",
            SURVEY_CONTACT_FLOW_ID="5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
            SURVEY_SOURCE_PHONE_NUMBER="+442079460000",
            CALLBACK_MARKER_TABLE="SurveyCallbackMarkers",
        )
        os.environ.pop("AWS_PROFILE", None)
        import boto3

        # process_ctr_stream's dead-letter queue (CTR_DLQ_URL); no bench record is bad, so it stays empty.
        os.environ["CTR_DLQ_URL"] = boto3.client("sqs").create_queue(QueueName="survey-ctr-dead-letters")["QueueUrl"]
        from botocore.stub import Stubber
        from lambdas.survey import clients, process_ctr_stream

        dynamodb = boto3.client("dynamodb")
        for path in sorted((SURVEY / "infra" / "tables").glob("*.json")):
            spec = json.loads(path.read_text())
            if "KeySchema" in spec:
                dynamodb.create_table(**spec)

        # The reference: one PutItem round trip to the same server.
        round_trips = []
        for i in range(200):
            started = time.perf_counter()
            dynamodb.put_item(TableName="SurveyResponses", Item={"ContactId": {"S": f"ref-{i}"}})
            round_trips.append(time.perf_counter() - started)
        round_trip_ms = statistics.median(round_trips) * 1000

        process_ctr_stream.reset_caches()
        requests = {"count": 0, "started": 0.0, "spent": 0.0}

        def sending(**_: Any) -> None:
            requests["count"] += 1
            requests["started"] = time.perf_counter()

        def answered(**_: Any) -> None:
            requests["spent"] += time.perf_counter() - requests["started"]

        clients.dynamodb().meta.events.register("before-send.dynamodb.*", sending)
        clients.dynamodb().meta.events.register("after-call.dynamodb.*", answered)
        connect = Stubber(clients.connect())
        connect.activate()

        def run(event: dict[str, Any], calls: int) -> tuple[float, int, float]:
            for i in range(calls):
                connect.add_response("start_outbound_voice_contact", {"ContactId": f"survey-{i}"})
            requests.update(count=0, spent=0.0)
            with quiet():
                started = time.perf_counter()
                response = process_ctr_stream.handler(event, Context())
                elapsed = time.perf_counter() - started
            if response["batchItemFailures"]:
                raise SystemExit(f"records failed: {response['batchItemFailures'][:3]} ...")
            connect.assert_no_pending_responses()
            return elapsed, int(requests["count"]), requests["spent"]

        size = args.batch_size
        run(*batch(size, 1, 10_000_000))  # warm-up, not measured
        scenarios: dict[str, list[tuple[float, int, float]]] = {}
        delivered: list[dict[str, Any]] = []
        sequence = 0
        for name, every in (("opted in, new", 1), ("not opted in", None), ("10% opted in", 10)):
            results = []
            for _ in range(args.batches):
                event, opted = batch(size, every, sequence)
                sequence += size
                results.append(run(event, opted))
                if every == 1:
                    delivered.append(event)
            scenarios[name] = results
        scenarios["redelivered"] = [run(event, 0) for event in delivered]

        print(f"process_ctr_stream.handler, {size}-record Kinesis batches, {args.batches} per scenario, moto server")
        print(
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load_at_start:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end"
        )
        print(f"reference: one DynamoDB PutItem round trip to this moto server, median {round_trip_ms:.2f} ms")
        print()
        header = (
            f"{'scenario':<16} {'ms/batch med':>12} {'min':>8} {'max':>8} {'ms/record':>10} "
            f"{'DDB req/rec':>12} {'DDB ms/rec':>11} {'own ms/rec':>11}"
        )
        print(header)
        print("-" * len(header))
        own_new = 0.0
        for name in ("opted in, new", "redelivered", "10% opted in", "not opted in"):
            runs = sorted(scenarios[name])
            median_run = runs[len(runs) // 2]
            times = [elapsed * 1000 for elapsed, _, _ in runs]
            per_record_requests = statistics.mean(count for _, count, _ in runs) / size
            ddb_ms = median_run[2] * 1000 / size
            own_ms = (median_run[0] - median_run[2]) * 1000 / size
            own_new = own_ms if name == "opted in, new" else own_new
            print(
                f"{name:<16} {times[len(times) // 2]:>12.1f} {min(times):>8.1f} {max(times):>8.1f} "
                f"{median_run[0] * 1000 / size:>10.2f} {per_record_requests:>12.2f} {ddb_ms:>11.2f} {own_ms:>11.2f}"
            )
        print()
        print(
            f"opted in, new: {own_new:.2f} ms per record is the handler's own (Powertools, logging, botocore's "
            "request building and signing, the stubbed call); the rest waits on its 2 DynamoDB requests"
        )
        connect.deactivate()
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
