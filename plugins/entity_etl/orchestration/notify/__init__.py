"""Run notifications: one structured JSON event per occurrence, published to an SNS topic.

:class:`~entity_etl.orchestration.notify.notifier.SnsEventNotifier` is an Airflow notifier
(``airflow.sdk.BaseNotifier``), usable by any DAG:

* ``task_failed`` — a task's ``on_failure_callback``. Airflow calls it only when the task failed with
  no retries left (a failed try that will be retried calls ``on_retry_callback`` instead).
* ``dag_run_failed`` / ``run_succeeded`` — the DAG's ``on_failure_callback`` / ``on_success_callback``.
* ``run_too_long`` — a Deadline Alert (:func:`~entity_etl.orchestration.notify.deadline.run_too_long_alert`),
  run by the triggerer when a run is still going a given time after it was queued.

The topic is the notifier's ``topic_arn`` argument, else the environment variable
``ETL_NOTIFY_TOPIC_ARN``. With neither (the embedded default) the event is written to the task log.
A notification never fails its callback: any error is logged and the callback returns.

The event is :class:`entity_etl.notification_contract.NotificationEvent` (``schema_version`` 1), the
contract the Teams Lambda (``lambdas/notifications``) imports too: ``kind``, ``source``,
``event_id``, ``emitted_at``, ``entity``, ``dag_id``, ``run_id``, ``task_id``, ``stage``,
``logical_date``, ``data_interval``, ``try_number``, ``max_tries``, ``error`` (``type`` and
``message``, truncated and redacted), ``reason``, ``airflow_url`` (the task's log page, else the
run), ``airflow_run_url``, ``cloudwatch_log_url``, ``batch`` (for a stage that ran on AWS Batch:
:func:`~entity_etl.orchestration.batch.diagnosis.batch_failure_details`), ``summary``
(``run_succeeded``: ``stages``, ``row_counts``, ``duration_s``, plus whatever the caller of
``SnsEventNotifier.send`` adds, such as the NPS DAG's ``report``) and ``deadline``
(``run_too_long``). Keys are always present; unknown values are ``null``.

Modules, one concern each:

=================  ================================================================================
``context``        reading a callback context (worker objects or triggerer dicts), XCom, Airflow URLs
``redaction``      redacting and truncating text that leaves the process
``batch_failure``  AWS Batch ``DescribeJobs`` reduced to what an alert needs; console links
``batch_section``  the ``batch`` section of a ``task_failed`` event (job id from the task or XCom)
``run_summary``    the run's stage statistics (XCom, else the run store) and its failed stage
``event``          :func:`build_event`
``publish``        publishing to SNS (boto3 directly)
``notifier``       ``SnsEventNotifier``
``deadline``       ``run_too_long_alert``
=================  ================================================================================
"""
