"""Quantities parse as Kubernetes reads them (apimachinery resource.Quantity)."""
from fractions import Fraction

import pytest

from kubeling.api.quantity import format_milli, milli_value, parse_quantity, value


@pytest.mark.parametrize("text, expected", [
    pytest.param("100m", Fraction(1, 10), id="milli"),
    pytest.param("1", Fraction(1), id="plain"),
    pytest.param("1.5", Fraction(3, 2), id="decimal-point"),
    pytest.param("128Mi", 128 * 2 ** 20, id="binary-Mi"),
    pytest.param("1Gi", 2 ** 30, id="binary-Gi"),
    pytest.param("1e3", 1000, id="exponent"),
    pytest.param("1E-3", Fraction(1, 1000), id="negative-exponent"),
    pytest.param("2k", 2000, id="decimal-k"),
    pytest.param("1M", 10 ** 6, id="decimal-M"),
    pytest.param("500u", Fraction(5, 10000), id="micro"),
    pytest.param(".5", Fraction(1, 2), id="leading-dot"),
    pytest.param(2, 2, id="int"),
])
def test_parse(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1Qi", "1.2.3", "Mi", "1 Gi", "--1"])
def test_bad_quantities_raise_value_error(bad):
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity(bad)


def test_values_round_up_like_upstream():
    assert milli_value("100m") == 100
    assert milli_value("1") == 1000
    assert milli_value("0.0001") == 1  # MilliValue rounds up
    assert value("1500m") == 2
    assert value("128Mi") == 134217728
    assert milli_value(None) == 0 and value(None) == 0
    assert format_milli(1500) == "1500m" and format_milli(2000) == "2"
