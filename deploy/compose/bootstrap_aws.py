"""Create what the entity DAGs use on an AWS emulator (docker-compose's ``aws`` service, a moto server).

Idempotent: run it again and nothing changes. Resources, named by the compose file's environment:
the extracts bucket, the run-store and lease tables (their ``table_definition()``), the SNS alert
topic, the completion queue with its dead-letter queue, and, when ``SURVEY_TABLES_DIR`` names the survey
Lambdas' table definitions (``lambdas/survey/infra/tables/``), the ``SurveyResponses`` table that
``survey_nps_daily`` reads. Endpoint and credentials come from the
standard AWS variables (``AWS_ENDPOINT_URL`` ...). Not for real AWS: use ``deploy/cloudformation``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import boto3

from entity_etl.runtime.lease import DynamoLeaseStore
from entity_etl.runtime.run_store import DynamoRunStore


def bootstrap(env: dict[str, str]) -> dict[str, str]:
    if not env.get("AWS_ENDPOINT_URL"):
        raise SystemExit("bootstrap_aws: AWS_ENDPOINT_URL is not set; this script is for the local emulator only")
    s3, dynamodb, sqs, sns = (boto3.client(name) for name in ("s3", "dynamodb", "sqs", "sns"))
    bucket = urlsplit(env["ETL_OBJECT_STORE_URL"]).netloc
    region = s3.meta.region_name
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **config)
    existing = set(dynamodb.list_tables()["TableNames"])
    definitions = [
        DynamoRunStore.table_definition(env["ETL_RUNS_TABLE"]),
        DynamoLeaseStore.table_definition(env["ETL_LEASES_TABLE"]),
    ]
    if env.get("SURVEY_TABLES_DIR"):
        definitions.append(json.loads((Path(env["SURVEY_TABLES_DIR"]) / "survey-responses.json").read_text()))
    for definition in definitions:
        if definition["TableName"] not in existing:
            dynamodb.create_table(**definition)
    queue_name = env["ETL_COMPLETION_QUEUE_URL"].rstrip("/").rsplit("/", 1)[-1]
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue_url = sqs.create_queue(QueueName=queue_name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    topic_arn = sns.create_topic(Name=env["ETL_NOTIFY_TOPIC_ARN"].rsplit(":", 1)[-1])["TopicArn"]
    return {"bucket": bucket, "queue_url": queue_url, "dlq_url": dlq_url, "topic_arn": topic_arn}


if __name__ == "__main__":
    for name, value in bootstrap(dict(os.environ)).items():
        print(f"bootstrap_aws: {name} {value}")
    sys.exit(0)
