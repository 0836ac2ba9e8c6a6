"""The stage runtime: what ``etlctl run-stage`` executes, locally or in an AWS Batch container.

This package must never import Airflow (a test enforces it).
"""
