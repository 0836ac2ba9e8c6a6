"""The AWS Batch backend of a stage task (``EntityStageOperator`` in ``orchestration/stage_operator.py``).

* :mod:`.surface` — what the provider's ``BatchOperator`` shows Airflow, written out so parsing never
  imports it;
* :mod:`.job_spec` — the job: its deterministic name, command, container overrides and array size;
* :mod:`.provider_job` — ``StageBatchJob``, the provider's ``BatchOperator`` that runs it (imported only
  when a stage runs on Batch);
* :mod:`.diagnosis` — what AWS Batch says about a failed job (``DescribeJobs``, console and log links) and
  the stage's failure text, recorded in the run store;
* :mod:`.lease_keepalive` — the entity lease renewed while the task waits for its job;
* :mod:`.job_stats` — the statistics the job wrote to the object store.

Nothing here imports boto3 or the provider's operators and hooks at module level, except
:mod:`.provider_job`, which only a running task imports.
"""
