#!/bin/sh
# Amazon MWAA startup script: MWAA runs it on every Airflow container (scheduler, DAG processor,
# workers, triggerer, web server) when the container starts, before Airflow; the variables it
# exports reach the Airflow processes. A change to this file needs an environment update.
#
# The entity files and SQL are synced with the DAG files (s3://<bucket>/dags/include/ ->
# $AIRFLOW_HOME/dags/include), so a new entity needs no environment update. The entity_etl package
# comes from plugins.zip ($AIRFLOW_HOME/plugins), where its default include/ does not exist.
# (PYTHONPATH is reserved on MWAA: nothing here can put the DAGs folder on it.)
export ETL_INCLUDE_DIR="${AIRFLOW_HOME:-/usr/local/airflow}/dags/include"
