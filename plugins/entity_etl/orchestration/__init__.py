"""The Airflow 3 side: DAG factory, the stage operator with its two compute backends, timetables."""
