"""The top-level API of ``import sie``: light to import, lazy stage functions."""

from __future__ import annotations

from pathlib import Path

import pytest

import sie
from sie.errors import UsageError


def test_list_methods_is_the_registry() -> None:
    names = [name for name, _ in sie.list_methods()]
    assert names[0] == "sie" and {"vicreg", "simclr", "augself", "equimod", "supervised"} <= set(names)


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no checkpoint\.pt"):
        sie.evaluate(tmp_path, tmp_path)


def test_public_names() -> None:
    assert {"train", "evaluate", "list_methods", "load_backbone", "__version__"} <= set(sie.__all__)


def test_train_stays_the_function_after_the_engine_is_imported() -> None:
    import sie.engine

    assert callable(sie.train) and sie.train.__module__ == "sie" and sie.engine.train is not sie.train
