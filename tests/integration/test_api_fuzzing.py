"""Schemathesis against the service's own OpenAPI document, with the API key off and on.

Two `bentoml serve serving.service:PortfolioService` processes on 127.0.0.1
answer (one without an API key, one with `PORTFOLIO_API_KEY`); schemathesis
loads each one's `/docs.json` and generates requests for every operation in
it: schema-valid ones (positive) and ones that break the schema (negative).
Every answer must

- never be a 5xx;
- pass schemathesis's conformance checks against the document: documented
  status code, content type and headers, the response schema (the 200 bodies
  and the `ErrorResponse` of every error), invalid bodies rejected, the API
  key not ignored;
- when it is a 4xx, be exactly the documented error format
  (`{"error": {"type", "message", "details": [{"loc", "msg", "type"}]}}`)
  with a documented `type`;
- for a schema-valid body refused with 422, name a rule that depends on the
  served data (an unknown feature or filter value, a feature of the wrong
  kind for the champion models), never a schema rule the document hides.

A schema-valid body can still be refused for data reasons, so schemathesis's
`positive_data_acceptance` check is not used; the last rule replaces it.
Bodies with real account ids and real feature names (typed values, extreme
numbers) also go through the live what-if scoring path. Every generated case
is counted; the module checks that at least `MIN_CASES` were sent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from service_harness import Server, ServiceHome, start_service, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "fuzz-key-7f3a9c"
MIN_CASES = 500
PROTECTED_PATHS = frozenset({"/score", "/portfolio"})

# The `error.type` values docs/api.md ("Errors") documents.
ERROR_TYPES = frozenset(
    {
        "invalid_json",
        "bad_request",
        "unauthorized",
        "method_not_allowed",
        "no_snapshot",
        "payload_too_large",
        "unsupported_media_type",
        "validation_error",
        "not_ready",
        "internal_error",
    }
)
# 422 rules that depend on the served champions and snapshot, which no static schema can state.
DATA_RULES = frozenset(
    {"unknown_feature", "missing_features", "number_type", "category_type", "unknown_value"}
)

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
    st_checks.negative_data_rejection,
    st_checks.ignored_auth,
]

# Examples per operation (GET operations without parameters have only one case).
BUDGET = {
    "open": {GenerationMode.POSITIVE: 110, GenerationMode.NEGATIVE: 80},
    "keyed": {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 40},
    "keyed-no-key": {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 25},
    "keyed-wrong-key": {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 25},
}
WHAT_IF_EXAMPLES = 80


@dataclass
class Tally:
    """Generated cases by (campaign, operation, mode), and the status codes seen."""

    cases: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)

    def total(self, campaign: str | None = None) -> int:
        return sum(n for key, n in self.cases.items() if campaign in (None, key[0]))


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def servers(service_home: ServiceHome) -> Iterator[dict[str, Server]]:
    """The service without and with an API key, started side by side."""
    started = {
        "open": start_service(service_home.env("fuzz-open"), service_home.root / "fuzz-open.log"),
        "keyed": start_service(
            service_home.env("fuzz-keyed", PORTFOLIO_API_KEY=API_KEY),
            service_home.root / "fuzz-keyed.log",
        ),
    }
    try:
        for server in started.values():
            wait_for(server, "/readyz")
        yield started
    finally:
        for server in started.values():
            stop(server.process)


def _load_schema(server: Server) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/docs.json")


def _fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )


def header(response: Any, name: str) -> str:
    """One header of a schemathesis response (its headers map names to lists of values)."""
    for key, values in response.headers.items():
        if key.lower() == name:
            return values[0] if isinstance(values, list) else values
    return ""


def assert_documented_error(response: Any, method: str, path: str) -> None:
    """A 4xx body is exactly the documented error document."""
    text = response.text
    assert "Traceback" not in text, (method, path, text[:500])
    content_type = header(response, "content-type")
    assert content_type.startswith("application/json"), (method, path, response.headers)
    document = json.loads(text)
    assert set(document) == {"error"}, (method, path, text[:500])
    error = document["error"]
    assert set(error) == {"type", "message", "details"}, (method, path, text[:500])
    assert error["type"] in ERROR_TYPES, (method, path, text[:500])
    assert isinstance(error["message"], str) and error["message"], (method, path, text[:500])
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg", "type"}, (method, path, text[:500])
        assert all(isinstance(part, str | int) for part in detail["loc"])
        assert isinstance(detail["msg"], str) and isinstance(detail["type"], str)


def _run_campaign(
    tally: Tally,
    campaign: str,
    server: Server,
    budget: dict[GenerationMode, int],
    prepare_headers: Callable[[dict[str, Any]], dict[str, Any]],
    expect_unauthorized: bool = False,
) -> None:
    """Every operation of the server's document, in both generation modes, within `budget`."""
    schema = _load_schema(server)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= PROTECTED_PATHS | {"/livez", "/readyz", "/metrics"}
    for operation in operations:
        for mode, examples in budget.items():
            if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
                continue  # no parameters or body: nothing to make invalid
            _fuzz_operation(
                tally,
                campaign,
                server,
                operation,
                mode,
                examples,
                prepare_headers,
                expect_unauthorized,
            )


def _fuzz_operation(
    tally: Tally,
    campaign: str,
    server: Server,
    operation: Any,
    mode: GenerationMode,
    examples: int,
    prepare_headers: Callable[[dict[str, Any]], dict[str, Any]],
    expect_unauthorized: bool,
) -> None:
    path, method = operation.path, operation.method.upper()

    @_fuzz_settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        tally.cases[(campaign, f"{method} {path}", mode.value)] += 1
        case.headers = prepare_headers(dict(case.headers or {}))
        response = case.call(base_url=server.url, timeout=60)
        tally.statuses[(campaign, response.status_code)] += 1
        assert response.status_code < 500, (method, path, case.body, response.text[:1000])
        if expect_unauthorized and path in PROTECTED_PATHS:
            assert response.status_code == 401, (method, path, response.text[:500])
            assert header(response, "www-authenticate") == "Bearer"
        if 400 <= response.status_code < 500:
            assert_documented_error(response, method, path)
        if response.status_code == 422 and mode is GenerationMode.POSITIVE:
            rules = {d["type"] for d in response.json()["error"]["details"]}
            assert rules and rules <= DATA_RULES, (path, case.body, response.text[:1000])
        checks = [c for c in CHECKS if not (expect_unauthorized and c is st_checks.ignored_auth)]
        case.validate_response(response, checks=checks, headers=case.headers)

    check()


# --------------------------------------------------------------------------- campaigns


def test_fuzz_without_an_api_key(servers, tally):
    _run_campaign(tally, "open", servers["open"], BUDGET["open"], lambda headers: {})
    assert tally.statuses[("open", 200)] > 0 and tally.statuses[("open", 422)] > 0


def test_fuzz_with_the_right_api_key(servers, tally):
    def right_key(headers: dict[str, Any]) -> dict[str, Any]:
        return {**headers, "Authorization": f"Bearer {API_KEY}"}

    _run_campaign(tally, "keyed", servers["keyed"], BUDGET["keyed"], right_key)
    assert tally.statuses[("keyed", 200)] > 0 and tally.statuses[("keyed", 401)] == 0


def test_fuzz_without_the_api_key_is_401_on_every_guarded_route(servers, tally):
    def no_key(headers: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in headers.items() if k.lower() != "authorization"}

    _run_campaign(
        tally,
        "keyed-no-key",
        servers["keyed"],
        BUDGET["keyed-no-key"],
        no_key,
        expect_unauthorized=True,
    )
    assert tally.statuses[("keyed-no-key", 401)] > 0


def test_fuzz_with_wrong_api_keys_is_401_on_every_guarded_route(servers, tally):
    """The bearer tokens schemathesis generates (and a near miss of the real key)."""

    def wrong_key(headers: dict[str, Any]) -> dict[str, Any]:
        token = str(headers.get("Authorization", "")).removeprefix("Bearer ")
        if token == API_KEY or not token:
            token = API_KEY[:-1]
        return {**headers, "Authorization": f"Bearer {token}"}

    _run_campaign(
        tally,
        "keyed-wrong-key",
        servers["keyed"],
        BUDGET["keyed-wrong-key"],
        wrong_key,
        expect_unauthorized=True,
    )
    assert tally.statuses[("keyed-wrong-key", 401)] > 0


def _what_if_bodies(features: pd.DataFrame) -> st.SearchStrategy[dict[str, Any]]:
    """`/score` bodies with real ids and feature names, typed values and extreme numbers."""
    known_ids = features["account_id"].astype(str).head(20).tolist()
    columns = [c for c in features.columns if c not in ("account_id", "as_of")]
    categorical = [c for c in columns if features[c].dtype.kind not in "fiub"]
    categories = {c: sorted(features[c].dropna().astype(str).unique()) for c in categorical}
    numbers = (
        st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(min_value=-(10**12), max_value=10**12)
        | st.booleans()
        | st.none()
    )

    def value_for(name: str) -> st.SearchStrategy[Any]:
        if name == "arr":
            return st.floats(min_value=0, max_value=1e308) | st.integers(0, 10**15)
        if name in categorical:
            return st.sampled_from(categories[name] or ["x"]) | st.text(max_size=12) | st.none()
        return numbers

    changes = st.lists(st.sampled_from(columns), max_size=6, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: value_for(n) for n in names})
    )
    full_records = st.sampled_from(range(len(features))).map(
        lambda i: {
            c: (None if pd.isna(v) else v if isinstance(v, str) else float(v))
            for c, v in features.iloc[i][columns].items()
        }
    )
    known = st.fixed_dictionaries(
        {"account_id": st.sampled_from(known_ids)}, optional={"features": changes}
    )
    new = st.builds(
        lambda record, change, n: {"account_id": f"FUZZ-NEW-{n}", "features": {**record, **change}},
        full_records,
        changes,
        st.integers(0, 99),
    )
    return st.fixed_dictionaries({"accounts": st.lists(known | new, min_size=1, max_size=4)})


def test_what_if_records_with_real_ids_and_features(servers, service_home, tally):
    """Schemathesis cases for `/score` whose bodies use the snapshot's ids and the models'
    feature names with values of the right kind (extreme numbers included): every one is
    scored (200, no error entry), and the answers conform to the document."""
    server = servers["open"]
    operation = _load_schema(server)["/score"]["POST"]
    bodies = _what_if_bodies(service_home.features)

    @_fuzz_settings(WHAT_IF_EXAMPLES)
    @given(case=operation.as_strategy(), body=bodies)
    def check(case: schemathesis.Case, body: dict[str, Any]) -> None:
        tally.cases[("what-if", "POST /score", "positive")] += 1
        case.body = body
        response = case.call(base_url=server.url, timeout=60)
        tally.statuses[("what-if", response.status_code)] += 1
        assert response.status_code == 200, (body, response.text[:1000])
        results = response.json()["results"]
        for result, account in zip(results, body["accounts"], strict=True):
            assert result["account_id"] == account["account_id"], results
            assert "error" not in result, (account, result)
            assert result["source"] == ("features" if "features" in account else "snapshot")
        case.validate_response(response, checks=CHECKS)

    check()
    assert tally.statuses[("what-if", 200)] > 0


def test_at_least_500_cases_were_generated(tally, record_property):
    """Runs last in this module: the campaigns above counted every case they sent."""
    campaigns = {key[0] for key in tally.cases}
    expected = {"open", "keyed", "keyed-no-key", "keyed-wrong-key", "what-if"}
    if campaigns != expected:
        pytest.skip(f"only {sorted(campaigns)} ran (select the whole module to count)")
    operations = {key[1] for key in tally.cases}
    assert {"POST /score", "POST /portfolio", "GET /livez", "GET /readyz", "GET /metrics"} <= (
        operations
    )
    by_campaign = {c: tally.total(c) for c in sorted(campaigns)}
    record_property("generated_cases", tally.total())
    record_property("generated_cases_by_campaign", by_campaign)
    assert tally.total() >= MIN_CASES, by_campaign
