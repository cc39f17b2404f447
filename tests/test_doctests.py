"""The examples in recbento's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import knowledge_graph
import recommender

MODULES = sorted(
    m.name
    for pkg in (recommender, knowledge_graph)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_every_package_module_is_examined() -> None:
    # a typo in the walk (or a package without __init__) would check nothing
    assert "recommender.event_store" in MODULES and "knowledge_graph.expand" in MODULES
    assert len(MODULES) > 50
