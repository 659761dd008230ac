"""``poisonlab.registry.Registry``: decorator and lazy registration, lookups and errors."""

from __future__ import annotations

import sys

import pytest

from poisonlab.registry import Registry


def test_decorator_registers_under_the_name_attribute_or_a_given_name():
    reg: Registry[type] = Registry("widget")

    @reg.register
    class A:
        name = "a"
        big = True

    @reg.register("bee")
    class B:
        big = False

    assert list(reg) == ["a", "bee"] and reg["a"] is A and reg.lookup("bee") is B
    assert reg.where(big=True) == ("a",)
    assert isinstance(reg.create("a"), A)


def test_unknown_names_are_key_errors_for_the_mapping_and_value_errors_for_lookup():
    reg = Registry("widget", {"one": object(), "two": object()})
    assert "three" not in reg and len(reg) == 2
    with pytest.raises(KeyError):
        reg["three"]
    with pytest.raises(ValueError, match="unknown widget 'three'; expected one of one, two$"):
        reg.lookup("three")


def test_duplicate_and_malformed_entries_are_refused():
    reg = Registry("widget", {"one": 1})
    with pytest.raises(ValueError, match="already registered"):
        reg.add("one", 2)
    with pytest.raises(ValueError, match="module:attribute"):
        reg.add("two", "no-colon")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add("", 3)


def test_lazy_entries_import_on_first_access_only(tmp_path, monkeypatch):
    package = tmp_path / "lazy_widgets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "heavy.py").write_text("class Heavy:\n    name = 'heavy'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", {"heavy": "heavy:Heavy"}, package="lazy_widgets")
    assert "heavy" in reg and "lazy_widgets.heavy" not in sys.modules  # membership does not import
    cls = reg["heavy"]
    assert "lazy_widgets.heavy" in sys.modules and cls.__name__ == "Heavy"
    assert reg.lookup("heavy") is cls and reg.where(name="heavy") == ("heavy",)
    monkeypatch.delitem(sys.modules, "lazy_widgets.heavy")
    monkeypatch.delitem(sys.modules, "lazy_widgets")
