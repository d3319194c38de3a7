"""Attribute values: our collector stores them as the contrib exporter does (pdata ``AsString``), checked against
the exporter reproduction (written independently from the Go source) and against Go's own outputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st
from opentelemetry.proto.common.v1 import common_pb2

from vllm_otel_collector.otlp.values import es6, value_str

from . import contrib_exporter as X

AV = common_pb2.AnyValue


@pytest.mark.parametrize("value,go", [  # strconv/encoding/json outputs quoted in ENV_NOTES and Go's json tests
    (0.25, "0.25"), (4.079100017406745e-05, "0.00004079100017406745"), (5e-07, "5e-7"), (1e21, "1e+21"),
    (1e20, "100000000000000000000"), (1e-6, "0.000001"), (9.999999e-7, "9.999999e-7"), (-0.0, "-0"), (0.0, "0"),
    (123456789.0, "123456789"), (1.7976931348623157e308, "1.7976931348623157e+308"), (5e-324, "5e-324"),
    (-2.5e-10, "-2.5e-10"), (0.1 + 0.2, "0.30000000000000004")])
def test_doubles_print_as_go_prints_them(value, go):
    assert es6(value) == X.es6(value) == go


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_doubles_agree_with_the_exporter_reproduction_and_round_trip(v):
    assert es6(v) == X.es6(v)
    assert float(es6(v)) == v


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.text(max_size=20).map(lambda s: AV(string_value=s)), st.integers(-2**63, 2**63 - 1).map(lambda i: AV(int_value=i)),
    st.floats().map(lambda d: AV(double_value=d)), st.booleans().map(lambda b: AV(bool_value=b)),
    st.binary(max_size=12).map(lambda b: AV(bytes_value=b)), st.just(AV()),
    st.lists(st.one_of(st.text(alphabet="abc \"'\\é", max_size=5), st.integers(-9, 9),
                       st.floats(), st.booleans()), max_size=4).map(
        lambda vs: AV(array_value=common_pb2.ArrayValue(values=[
            AV(string_value=v) if isinstance(v, str) else AV(bool_value=v) if isinstance(v, bool)
            else AV(int_value=v) if isinstance(v, int) else AV(double_value=v) for v in vs])))))
def test_value_strings_equal_the_exporters(av):
    """Every value our instrumentation sends (scalars, arrays of scalars without <, >, &: Go HTML-escapes those
    inside arrays, which we do not) is stored byte for byte as the exporter stores it."""
    assert value_str(av) == X.as_string(av)


def test_non_finite_doubles_are_the_exporters_error_text():
    assert [value_str(AV(double_value=v)) for v in (math.nan, math.inf, -math.inf)] == [
        X.as_string(AV(double_value=v)) for v in (math.nan, math.inf, -math.inf)] == [
        "json: unsupported value: NaN", "json: unsupported value: +Inf", "json: unsupported value: -Inf"]
