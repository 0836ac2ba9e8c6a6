"""Entity ETL: one Airflow DAG per enabled file in include/entities/ (dag_id etl_<entity>)."""

from entity_etl.orchestration.factory import register_entity_dags

register_entity_dags(globals())
