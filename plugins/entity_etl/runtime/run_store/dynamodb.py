"""The run store in DynamoDB (AWS): records, checkpoints and attempt history in one table."""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from entity_etl.runtime import attempt_history
from entity_etl.runtime.run_store.records import (
    RUN,
    Checkpoint,
    RunStore,
    StageRecord,
    StaleUpdateError,
    _stale_message,
)


class DynamoRunStore(RunStore):
    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client = client or boto3.client("dynamodb")

    def describe(self) -> str:
        return f"dynamodb table {self.table_name}"

    @staticmethod
    def table_definition(table_name: str) -> dict[str, Any]:
        """The CreateTable request (also used by the infrastructure template and the tests)."""
        return {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "entity", "AttributeType": "S"},
                {"AttributeName": "record", "AttributeType": "S"},
                {"AttributeName": "started_at", "AttributeType": "S"},
                {"AttributeName": "day", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "entity", "KeyType": "HASH"},
                {"AttributeName": "record", "KeyType": "RANGE"},
            ],
            "LocalSecondaryIndexes": [
                {
                    "IndexName": "by_entity_started",
                    "KeySchema": [
                        {"AttributeName": "entity", "KeyType": "HASH"},
                        {"AttributeName": "started_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "by_day",
                    "KeySchema": [
                        {"AttributeName": "day", "KeyType": "HASH"},
                        {"AttributeName": "started_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        }

    def put(self, record: StageRecord) -> None:
        from boto3.dynamodb.types import TypeSerializer

        item = {
            "entity": record.entity,
            "record": f"{record.run_id}#{record.stage}",
            "run_id": record.run_id,
            "stage": record.stage,
            "status": record.status,
            "status_rank": record.rank,
            "attempt": record.attempt,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "day": record.day,
            "stats": json.dumps(record.stats, sort_keys=True, default=str),
            "error": record.error,
            "batch_job_id": record.batch_job_id,
            "log_url": record.log_url,
        }
        serializer = TypeSerializer()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={k: serializer.serialize(v) for k, v in item.items()},
                ConditionExpression=(
                    "attribute_not_exists(#r) OR attempt < :attempt OR (attempt = :attempt AND status_rank < :rank)"
                ),
                ExpressionAttributeNames={"#r": "record"},
                ExpressionAttributeValues={":attempt": {"N": str(record.attempt)}, ":rank": {"N": str(record.rank)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StaleUpdateError(
                _stale_message(record, self.get(record.entity, record.run_id, record.stage))
            ) from None
        attempt_history.dynamo_put(self.client, self.table_name, asdict(record))  # after the accepted update

    @staticmethod
    def _record(item: dict[str, Any]) -> StageRecord:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        data = {k: deserializer.deserialize(v) for k, v in item.items()}
        return StageRecord(
            entity=data["entity"],
            run_id=data["run_id"],
            stage=data["stage"],
            status=data["status"],
            attempt=int(data["attempt"]) if isinstance(data["attempt"], Decimal | int) else 1,
            started_at=data.get("started_at", ""),
            ended_at=data.get("ended_at", ""),
            stats=json.loads(data.get("stats") or "{}"),
            error=data.get("error", ""),
            batch_job_id=data.get("batch_job_id", ""),
            log_url=data.get("log_url", ""),
        )

    def get(self, entity: str, run_id: str, stage: str = RUN) -> StageRecord | None:
        response = self.client.get_item(
            TableName=self.table_name,
            Key={"entity": {"S": entity}, "record": {"S": f"{run_id}#{stage}"}},
            ConsistentRead=True,
        )
        return self._record(response["Item"]) if "Item" in response else None

    def _query(self, **kwargs: Any) -> list[StageRecord]:
        paginator = self.client.get_paginator("query")
        records: list[StageRecord] = []
        for page in paginator.paginate(TableName=self.table_name, **kwargs):
            records.extend(self._record(item) for item in page.get("Items", []))
        return records

    def run_records(self, entity: str, run_id: str) -> list[StageRecord]:
        records = self._query(
            KeyConditionExpression="entity = :e AND begins_with(#r, :prefix)",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues={":e": {"S": entity}, ":prefix": {"S": f"{run_id}#"}},
            ConsistentRead=True,
        )
        return sorted((r for r in records if r.run_id == run_id), key=lambda r: (r.started_at, r.stage))

    def by_entity(self, entity: str, since: str | None = None) -> list[StageRecord]:
        return self._query(
            IndexName="by_entity_started",
            KeyConditionExpression="entity = :e AND started_at >= :since",
            ExpressionAttributeValues={":e": {"S": entity}, ":since": {"S": since or "0"}},
        )

    def by_day(self, day: str) -> list[StageRecord]:
        return self._query(
            IndexName="by_day",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":d": {"S": day}},
        )

    def _history(self, entity: str, since: str | None) -> list[dict[str, Any]]:
        return attempt_history.dynamo_records(self.client, self.table_name, entity, since)

    # -- chunk checkpoints (sparse: no started_at/day, so never in the audit indexes) ---------------
    @staticmethod
    def _checkpoint_prefix(run_id: str, stage: str) -> str:
        return f"#chunk#{run_id}#{stage}#"

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "entity": {"S": checkpoint.entity},
                "record": {"S": self._checkpoint_prefix(checkpoint.run_id, checkpoint.stage) + checkpoint.chunk},
                "run_id": {"S": checkpoint.run_id},
                "stage": {"S": checkpoint.stage},
                "chunk": {"S": checkpoint.chunk},
                "plan": {"S": checkpoint.plan},
                "data": {"S": json.dumps(checkpoint.data, sort_keys=True)},
                "written_at": {"S": checkpoint.written_at},
            },
        )

    def _checkpoint_items(self, entity: str, run_id: str, stage: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="entity = :e AND begins_with(#r, :prefix)",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues={":e": {"S": entity}, ":prefix": {"S": self._checkpoint_prefix(run_id, stage)}},
            ConsistentRead=True,
        ):
            items.extend(page.get("Items", []))
        return items

    def checkpoints(self, entity: str, run_id: str, stage: str) -> list[Checkpoint]:
        found = [
            Checkpoint(
                entity=item["entity"]["S"],
                run_id=item["run_id"]["S"],
                stage=item["stage"]["S"],
                chunk=item["chunk"]["S"],
                plan=item["plan"]["S"],
                data=json.loads(item["data"]["S"]),
                written_at=item["written_at"]["S"],
            )
            for item in self._checkpoint_items(entity, run_id, stage)
        ]
        return sorted(found, key=lambda c: c.chunk)

    def clear_checkpoints(self, entity: str, run_id: str, stage: str) -> int:
        items = self._checkpoint_items(entity, run_id, stage)
        for item in items:
            self.client.delete_item(TableName=self.table_name, Key={"entity": item["entity"], "record": item["record"]})
        return len(items)
