"""``doc_md`` for an entity DAG: a summary a reader can scan in the Airflow UI, not the YAML."""

from __future__ import annotations

from entity_etl.config.model import EntityConfig


def entity_doc_md(config: EntityConfig, source_file: str) -> str:
    cols = ", ".join(
        f"`{c.name}`" + (f" → `{c.target}`" if c.target and c.target != c.name else "") for c in config.columns
    )
    dedupe = config.dedupe
    keep = f"{dedupe.keep} by `{dedupe.order_by}`" if dedupe.order_by else f"{dedupe.keep} in extract order"
    translate = (
        f"{', '.join(f'`{c}`' for c in config.translate.columns)} "
        f"({config.translate.source_language} → {config.translate.target_language})"
        if config.translate.enabled
        else "off"
    )
    lines = [
        f"### Entity `{config.entity}`" + (f": {config.description}" if config.description else ""),
        "",
        "| | |",
        "|---|---|",
        f"| Schedule | `{config.schedule}` ({config.timezone}), from {config.start_date}, "
        f"catchup {'on' if config.catchup else 'off'} |",
        f"| Source | connection `{config.source.conn_id}`, query `include/sql/{config.source.extract_sql}` |",
        f"| Staging → target | `{config.staging.table}` → `{config.target.table}` on `{config.target.conn_id}` |",
        f"| Columns ({len(config.columns)}) | {cols} |",
        f"| Dedupe | key ({', '.join(f'`{k}`' for k in dedupe.key)}), keep {keep} |",
        f"| Translate | {translate} |",
        f"| Compute (batch) | queue `{config.compute.job_queue}`, definition `{config.compute.job_definition}`, "
        f"{config.compute.vcpu} vCPU, {config.compute.memory_mib} MiB |",
        f"| Retries | {config.retries} × {config.retry_delay_minutes} min |",
        "",
        f"Stages: {' → '.join(config.stages)}. Each run extracts exactly its data interval; runs of this "
        "entity never overlap (`max_active_runs=1`).",
        "",
        f"Configured in `{source_file}`.",
    ]
    return "\n".join(lines)
