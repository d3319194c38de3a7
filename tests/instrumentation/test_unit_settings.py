"""Every ``OTEL_INSTRUMENTATION_VLLM_*`` number (:mod:`opentelemetry.instrumentation.vllm.settings`) at its boundaries:
a value that is not a finite positive number falls back to the default with a warning and never raises (a typo must
not stop vLLM; ``inf`` once overflowed ``int()`` for the in-flight bound and a thread wait for the shutdown bound)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opentelemetry.instrumentation.vllm import settings as S

NUMBERS = [(S.ENV_REQUEST_TIMEOUT, "request_timeout_s", S.DEFAULT_REQUEST_TIMEOUT_S),
           (S.ENV_MAX_IN_FLIGHT, "max_in_flight", S.DEFAULT_MAX_IN_FLIGHT),
           (S.ENV_SHUTDOWN_TIMEOUT, "shutdown_timeout_s", S.DEFAULT_SHUTDOWN_TIMEOUT_S)]


@pytest.mark.parametrize("env,field,default", NUMBERS)
@pytest.mark.parametrize("raw", ["0", "-0", "-1", "nan", "NaN", "inf", "-inf", "1e400", "", "  ", "five", "1_0x"])
def test_a_value_that_is_not_finite_and_positive_is_the_default(monkeypatch, env, field, default, raw):
    monkeypatch.setenv(env, raw)
    assert getattr(S.Settings.from_env(), field) == default


@pytest.mark.parametrize("env,field,default", NUMBERS)
@pytest.mark.parametrize("raw,want", [("1e-9", 1e-9), (" 2.5 ", 2.5), ("1e300", 1e300), ("7", 7.0)])
def test_a_finite_positive_value_is_taken(monkeypatch, env, field, default, raw, want):
    monkeypatch.setenv(env, raw)
    got = getattr(S.Settings.from_env(), field)
    assert got == (max(1, int(want)) if field == "max_in_flight" else want)  # a bound of 0 would zombie every request


@given(st.text(max_size=30))
def test_any_text_gives_a_finite_positive_number_and_never_raises(raw):
    with pytest.MonkeyPatch.context() as mp:
        for env, _, _ in NUMBERS:
            mp.setenv(env, raw.replace("\x00", ""))
        s = S.Settings.from_env()
    for _, field, _ in NUMBERS:
        value = getattr(s, field)
        assert math.isfinite(value) and value > 0
    assert s.max_in_flight >= 1
