"""The DAG files pause automatic garbage collection while they build, and always restore it as it was."""

from __future__ import annotations

import gc

import pytest

from entity_etl.orchestration.factory import raise_config_errors, register_entity_dags
from entity_etl.orchestration.gc_pause import collection_paused


def test_collection_is_paused_inside_and_restored_after_even_on_error() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("a DAG failed to build")
    assert gc.isenabled()


def test_a_caller_that_disabled_collection_keeps_it_disabled() -> None:
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_parsing_leaves_collection_enabled() -> None:
    namespace: dict[str, object] = {}
    assert register_entity_dags(namespace) and gc.isenabled()
    raise_config_errors()
    assert gc.isenabled()
