"""The compute backend is a deployment setting: ETL_COMPUTE_BACKEND, else the Airflow Variable
``etl_compute_backend`` (here through Airflow's own ``AIRFLOW_VAR_`` secrets backend), else local."""

from __future__ import annotations

import pytest

from entity_etl.orchestration.backend import BackendSettingError, compute_backend


@pytest.fixture(autouse=True)
def no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_COMPUTE_BACKEND", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_ETL_COMPUTE_BACKEND", raising=False)


def test_the_default_is_local() -> None:
    assert compute_backend() == "local"


def test_the_airflow_variable_chooses_when_the_environment_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_ETL_COMPUTE_BACKEND", " Batch ")
    assert compute_backend() == "batch"


def test_the_environment_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_ETL_COMPUTE_BACKEND", "batch")
    monkeypatch.setenv("ETL_COMPUTE_BACKEND", "local")
    assert compute_backend() == "local"


@pytest.mark.parametrize(
    ("variable", "where"),
    [
        ("ETL_COMPUTE_BACKEND", "ETL_COMPUTE_BACKEND"),
        ("AIRFLOW_VAR_ETL_COMPUTE_BACKEND", "Airflow Variable etl_compute_backend"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_choices(
    monkeypatch: pytest.MonkeyPatch, variable: str, where: str
) -> None:
    monkeypatch.setenv(variable, "fargate")
    with pytest.raises(
        BackendSettingError, match=rf"^{where}='fargate' is not a compute backend; use one of local, batch$"
    ):
        compute_backend()
