"""Shared test harness: servers (MariaDB, moto), entity files, the stage pipeline, probes and stacks."""
