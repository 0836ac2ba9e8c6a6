"""Daily NPS of the Amazon Connect post-call survey: the Airflow-free part of ``survey_nps_daily``.

* :mod:`~entity_etl.nps.settings` — the rating scale (which answers are promoters, passives,
  detractors, and which count as satisfied for CSAT) and the deployment settings;
* :mod:`~entity_etl.nps.aggregate` — streaming counters: one day's answers in, figures out, overall
  and per queue and per agent, in memory bounded by the number of queues and agents;
* :mod:`~entity_etl.nps.report_table` — the reporting table: a day's rows replaced in one transaction;
* :mod:`~entity_etl.nps.chart` — the PNG trend chart (matplotlib, imported only when drawing);
* :mod:`~entity_etl.nps.job` — one day end to end: read, aggregate, store, publish the CSV and chart.

The DAG is ``dags/survey_nps_daily.py``; what it computes and why is in ``README.md`` beside this file.
Nothing here imports Airflow.
"""
