"""Amazon Connect post-call survey Lambdas (boto3 and AWS Lambda Powertools only; never Airflow).

Handlers (the Lambda ``handler`` setting, with this package at the root of the deployment zip):

* ``survey.process_ctr_stream.handler``: Kinesis (contact trace records) -> outbound survey call.
* ``survey.update_survey_result.handler``: contact flow -> the rating in DynamoDB.
* ``survey.retrieve_customer_name.handler``: contact flow -> ``{"CustomerName": ...}``.

``survey.responses`` is the table's schema and read side, shared with the NPS DAG: a copy of
``plugins/entity_etl/survey_reader.py`` (a symlink in the repository; boto3 only, importable on its own).
"""
