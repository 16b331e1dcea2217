"""The scoring service as a client sees it: `bentoml serve` on 127.0.0.1, a real MLflow store.

One module-scoped server (`open_server`) answers most tests; it reads a copy of
the session's champion store (so promotions here stay here) and a copy of the
session's nightly run folder, and polls every second. A second server
(`keyed_server`) requires an API key and starts against a tracking server that
is not running yet: it must say it is not ready, then become ready once an
`mlflow server` answers on that address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from service_harness import (
    REPO,
    Server,
    ServiceHome,
    assert_error,
    free_port,
    start_service,
    start_with_cli,
    stop,
    wait_for,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def open_server(service_home: ServiceHome) -> Iterator[Server]:
    server = start_service(service_home.env("open"), service_home.root / "open.log")
    try:
        wait_for(server, "/readyz")
        yield server
    finally:
        stop(server.process)


KEYED_WORKERS = 2


@pytest.fixture(scope="module")
def keyed_server(service_home: ServiceHome) -> Iterator[tuple[Server, int]]:
    """Started with `portfolio serve`, with an API key, against a tracking server that is not
    running yet (its port is given)."""
    tracking_port = free_port()
    env = service_home.env(
        "keyed",
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{tracking_port}",
        SERVICE_TEST_KEY="test-key-123",
    )
    server = start_with_cli(
        env,
        service_home.root / "keyed.log",
        "--api-key-env",
        "SERVICE_TEST_KEY",
        "--reload-seconds",
        "1",
        "--workers",
        str(KEYED_WORKERS),
    )
    try:
        wait_for(server, "/livez")
        yield server, tracking_port
    finally:
        stop(server.process)


def _record(features: pd.DataFrame, position: int = 0) -> dict:
    row = features.iloc[position].drop(["account_id", "as_of"])
    return {
        name: (None if pd.isna(value) else value if isinstance(value, str) else float(value))
        for name, value in row.items()
    }


# --------------------------------------------------------------------------- scoring


def test_scores_accounts_by_id_with_reasons_and_versions(open_server, service_home):
    ids = service_home.account_ids(3)
    response = open_server.post("/score", {"accounts": [{"account_id": i} for i in ids]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["account_id"] for r in results] == ids
    nightly = pd.read_parquet(service_home.run_dir / "scores.parquet").set_index("account_id")
    for result in results:
        expected = nightly.loc[result["account_id"]]
        assert result["p_churn"] == pytest.approx(expected["p_churn"], abs=1e-12)
        assert result["p_upsell"] == pytest.approx(expected["p_upsell"], abs=1e-12)
        assert result["priority"] == pytest.approx(expected["priority"], abs=1e-6)
        assert result["tier"] == expected["tier"]
        assert result["expected_arr_at_risk"] == pytest.approx(result["p_churn"] * result["arr"])
        assert result["churn_model"] == "churn" and result["churn_model_version"] == "1"
        assert result["upsell_model"] == "upsell" and result["upsell_model_version"] == "1"
        assert result["source"] == "snapshot"
        assert result["as_of"] == str(pd.Timestamp(expected["as_of"]).date())
        models = [reason["model"] for reason in result["reasons"]]
        assert models == ["churn"] * 3 + ["upsell"] * 3
        first = result["reasons"][0]
        assert set(first) == {"model", "rank", "feature", "value", "contribution", "text"}
        assert isinstance(first["text"], str) and first["text"]


def test_unknown_id_is_an_error_entry_not_a_failed_request(open_server, service_home):
    known = service_home.account_ids(1)[0]
    response = open_server.post(
        "/score", {"accounts": [{"account_id": "NOPE-1"}, {"account_id": known}]}
    )
    assert response.status_code == 200
    unknown, scored = response.json()["results"]
    assert unknown["account_id"] == "NOPE-1"
    assert "unknown account_id" in unknown["error"]
    assert "p_churn" in scored


def test_what_if_record_scores_like_the_snapshot_row(open_server, service_home):
    account_id = service_home.account_ids(1)[0]
    record = _record(service_home.features)
    by_id, what_if, new_account = open_server.post(
        "/score",
        {
            "accounts": [
                {"account_id": account_id},
                {"account_id": account_id, "features": {}},
                {"account_id": "NEW-1", "features": record},
            ]
        },
    ).json()["results"]
    assert what_if["source"] == "features" and new_account["source"] == "features"
    assert what_if["p_churn"] == pytest.approx(by_id["p_churn"], abs=1e-12)
    assert what_if["p_upsell"] == pytest.approx(by_id["p_upsell"], abs=1e-12)
    assert what_if["priority"] == pytest.approx(by_id["priority"], abs=1e-6)
    assert what_if["reasons"] == by_id["reasons"]
    assert new_account["p_churn"] == pytest.approx(by_id["p_churn"], abs=1e-12)


def test_what_if_changes_move_the_score(open_server, service_home):
    account_id = service_home.account_ids(1)[0]
    base = open_server.post("/score", {"accounts": [{"account_id": account_id}]}).json()
    doubled_arr = 2 * base["results"][0]["arr"] + 1000
    changed = open_server.post(
        "/score", {"accounts": [{"account_id": account_id, "features": {"arr": doubled_arr}}]}
    ).json()["results"][0]
    assert changed["arr"] == doubled_arr
    assert changed["expected_arr_at_risk"] == pytest.approx(changed["p_churn"] * doubled_arr)


def test_portfolio_summary_matches_the_nightly_function(open_server, service_home):
    response = open_server.post("/portfolio", {})
    assert response.status_code == 200
    summary = response.json()
    nightly = json.loads((service_home.run_dir / "portfolio.json").read_text())
    for key in ("as_of", "arr_total", "weighted_churn_risk", "concentration_top10"):
        assert summary[key] == nightly[key], key
    for key in (
        "weighted_churn_risk_band",
        "coverage_by_segment",
        "nrr_realised",
        "nrr_forecast",
        "pipeline_velocity",
        "alerts",
        "tiers",
        "allocation",
        "movers",
    ):
        assert key in summary
    segment = service_home.features["segment"].dropna().astype(str).iloc[0]
    filtered = open_server.post("/portfolio", {"segment": segment})
    assert filtered.status_code == 200
    assert filtered.json()["filters"] == {"segment": segment}
    assert filtered.json()["arr_total"] < summary["arr_total"]


# --------------------------------------------------------------------------- bad input


def test_malformed_json_is_400(open_server):
    response = open_server.post(
        "/score", content=b'{"accounts": [', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["accounts"]),
        ({"accounts": []}, ["accounts"]),
        ({"accounts": [{"account_id": 7}]}, ["accounts", 0, "account_id"]),
        ({"accounts": [{"id": "A"}]}, ["accounts", 0, "account_id"]),
        ({"accounts": [{"account_id": "A", "colour": "red"}]}, ["accounts", 0, "colour"]),
        ({"accounts": "A1"}, ["accounts"]),
        ({"accounts": [{"account_id": ""}]}, ["accounts", 0, "account_id"]),
    ],
)
def test_schema_violations_are_422_naming_the_field(open_server, body, loc):
    error = assert_error(open_server.post("/score", body), 422, "validation_error")
    assert error["details"][0]["loc"][: len(loc)] == loc


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_are_refused(open_server, literal):
    body = b'{"accounts": [{"account_id": "X", "features": {"arr": ' + literal + b"}}]}"
    response = open_server.post(
        "/score", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


def test_negative_arr_is_refused(open_server, service_home):
    account_id = service_home.account_ids(1)[0]
    error = assert_error(
        open_server.post(
            "/score", {"accounts": [{"account_id": account_id, "features": {"arr": -5.0}}]}
        ),
        422,
        "validation_error",
    )
    assert error["details"][0]["loc"] == ["accounts", 0, "features", "arr"]
    assert "at least 0" in error["details"][0]["msg"]


def test_what_if_feature_rules(open_server, service_home):
    account_id = service_home.account_ids(1)[0]
    unknown = assert_error(
        open_server.post(
            "/score", {"accounts": [{"account_id": account_id, "features": {"shoe_size": 1}}]}
        ),
        422,
        "validation_error",
    )
    assert unknown["details"][0]["loc"] == ["accounts", 0, "features", "shoe_size"]
    text = assert_error(
        open_server.post(
            "/score", {"accounts": [{"account_id": account_id, "features": {"arr": "lots"}}]}
        ),
        422,
        "validation_error",
    )
    assert text["details"][0]["loc"] == ["accounts", 0, "features", "arr"]
    missing = assert_error(
        open_server.post("/score", {"accounts": [{"account_id": "NEW", "features": {"arr": 10}}]}),
        422,
        "validation_error",
    )
    assert missing["details"][0]["type"] == "missing_features"


def test_too_many_accounts_is_422(open_server):
    body = {"accounts": [{"account_id": f"A{i}"} for i in range(1001)]}
    error = assert_error(open_server.post("/score", body), 422, "validation_error")
    assert error["details"][0]["loc"] == ["accounts"]
    assert "at most 1000" in error["message"]


def test_body_over_one_mebibyte_is_413(open_server):
    body = b'{"accounts": [{"account_id": "' + b"A" * (1024 * 1024) + b'"}]}'
    response = open_server.post(
        "/score", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type", ["application/vnd.bentoml+pickle", "application/vnd.bentoml+arrow", "text/csv"]
)
def test_non_json_content_types_are_415(open_server, content_type):
    response = open_server.post(
        "/score", content=b"\x80\x04K\x01.", headers={"content-type": content_type}
    )
    assert_error(response, 415, "unsupported_media_type")


def test_get_on_score_is_405(open_server):
    response = httpx.get(f"{open_server.url}/score", timeout=10)
    assert_error(response, 405, "method_not_allowed")


def test_portfolio_filter_errors(open_server):
    assert_error(open_server.post("/portfolio", {"colour": "red"}), 422, "validation_error")
    error = assert_error(
        open_server.post("/portfolio", {"segment": "nope"}), 422, "validation_error"
    )
    assert error["details"][0]["loc"] == ["segment"]


def test_random_bodies_never_cause_a_server_error(open_server, service_home):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    known_ids = service_home.account_ids(3)
    feature_names = [c for c in service_home.features.columns if c not in ("account_id", "as_of")]

    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False)
        | st.integers()
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=12,
    )
    names = st.sampled_from(["arr", "plan", "segment", *feature_names[:5]]) | st.text(max_size=12)
    accounts = st.lists(
        st.fixed_dictionaries(
            {"account_id": st.sampled_from(known_ids) | st.text(max_size=10) | st.integers()},
            optional={"features": st.dictionaries(names, json_values, max_size=4)},
        ),
        max_size=3,
    )
    bodies = json_values | st.fixed_dictionaries({"accounts": accounts})

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/score", "/portfolio"]), body=bodies)
    def check(path, body):
        response = open_server.post(
            path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, (body, response.text)
        document = response.json()
        assert ("error" in document) == (response.status_code >= 400)

    check()


# --------------------------------------------------------------------------- operations


def test_health_metrics_and_openapi(open_server, service_home):
    assert open_server.get("/livez").status_code == 200
    assert open_server.get("/readyz").status_code == 200
    open_server.post("/score", {"accounts": [{"account_id": service_home.account_ids(1)[0]}]})
    metrics = open_server.get("/metrics").text
    assert 'portfolio_request_duration_seconds_count{endpoint="/score"' in metrics
    assert (
        'portfolio_predictions_total{model="churn",source="snapshot",target="churn",version="1"}'
        in metrics
    )
    spec = open_server.get("/docs.json").json()
    assert "/score" in spec["paths"] and "/portfolio" in spec["paths"]


def test_new_snapshot_is_picked_up(open_server, service_home):
    newer = service_home.runs_root / f"{service_home.run_dir.name}-rerun"
    shutil.copytree(service_home.run_dir, newer)
    try:

        def serves_newer() -> bool:
            result = open_server.post("/score", {"accounts": [{"account_id": "NOPE"}]}).json()
            return newer.name in result["results"][0]["error"]

        wait_until(serves_newer, message="the service never loaded the newer run folder")
    finally:
        shutil.rmtree(newer)
    wait_until(
        lambda: (
            service_home.run_dir.name + ")"
            in open_server.post("/score", {"accounts": [{"account_id": "NOPE"}]}).json()["results"][
                0
            ]["error"]
        ),
        message="the service never went back to the remaining run folder",
    )


def _new_version(service_home: ServiceHome, target: str, source_version: str = "1") -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=service_home.tracking_uri, registry_uri=service_home.tracking_uri
    )
    original = client.get_model_version(target, source_version)
    return str(client.create_model_version(target, original.source, run_id=original.run_id).version)


def _promote(service_home: ServiceHome, target: str, version: str) -> None:
    from training.registry import promote

    promote(target, version, "service test", uri=service_home.tracking_uri)


def test_champion_swap_during_traffic_drops_no_request(open_server, service_home):
    ids = service_home.account_ids(5)
    record = _record(service_home.features, 1)
    body = {
        "accounts": [{"account_id": i} for i in ids] + [{"account_id": "NEW", "features": record}]
    }
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=open_server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/score", json=body)
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                results = response.json()["results"]
                if any("error" in r for r in results):
                    failures.append(json.dumps(results))
                versions = {r["churn_model_version"] for r in results}
                if len(versions) != 1:
                    failures.append(f"mixed versions in one answer: {versions}")
                seen.extend(versions)

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(seen) > 20, message="no traffic got through")
        version = _new_version(service_home, "churn")
        _promote(service_home, "churn", version)
        wait_until(
            lambda: version in seen[-5:], timeout=90, message="the new champion never served"
        )
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    first_new = seen.index(version)
    assert set(seen[:first_new]) == {"1"}
    assert "1" not in seen[first_new + 20 :]
    metrics = open_server.get("/metrics").text
    assert f'target="churn",version="{version}"' in metrics


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(open_server, service_home):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=service_home.tracking_uri, registry_uri=service_home.tracking_uri
    )
    empty = service_home.root / "empty-model"
    empty.mkdir(exist_ok=True)
    broken = str(client.create_model_version("upsell", empty.as_uri()).version)
    before = open_server.post(
        "/score", {"accounts": [{"account_id": service_home.account_ids(1)[0]}]}
    )
    serving_version = before.json()["results"][0]["upsell_model_version"]
    _promote(service_home, "upsell", broken)
    try:
        wait_until(
            lambda: (
                f"upsell v{broken}" in open_server.log_text() and "failed" in open_server.log_text()
            ),
            message="the failed load was not logged",
        )
        assert open_server.get("/readyz").status_code == 200
        after = open_server.post(
            "/score", {"accounts": [{"account_id": service_home.account_ids(1)[0]}]}
        )
        assert after.status_code == 200
        assert after.json()["results"][0]["upsell_model_version"] == serving_version
    finally:
        _promote(service_home, "upsell", serving_version)


def test_not_ready_until_the_tracking_server_answers_then_requires_the_key(
    keyed_server, service_home, tmp_path
):
    server, tracking_port = keyed_server
    assert server.get("/readyz").status_code == 503
    not_ready = server.post(
        "/score",
        {"accounts": [{"account_id": "A"}]},
        headers={"authorization": "Bearer test-key-123"},
    )
    error = assert_error(not_ready, 503, "not_ready")
    assert "127.0.0.1" in error["message"] or "champion" in error["message"]
    wait_until(
        lambda: "cannot check the champion models" in server.log_text(), message="no log line"
    )

    tracking = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            service_home.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(tracking_port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=(tmp_path / "mlflow.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(server, "/readyz")
        account_id = service_home.account_ids(1)[0]
        body = {"accounts": [{"account_id": account_id}]}
        assert_error(server.post("/score", body), 401, "unauthorized")
        assert_error(
            server.post("/score", body, headers={"authorization": "Bearer wrong"}),
            401,
            "unauthorized",
        )
        assert_error(server.post("/portfolio", {}), 401, "unauthorized")
        keyed = {"authorization": "Bearer test-key-123"}
        # /readyz answers from whichever worker takes it: another one may still be loading
        # for a moment (and answers 503 until it is done), so wait for every worker's load.
        wait_until(
            lambda: server.log_text().count("(loaded in ") >= KEYED_WORKERS,
            timeout=120,
            message="every worker never loaded the champions",
        )
        ok = server.post("/score", body, headers=keyed)
        assert ok.status_code == 200 and "p_churn" in ok.json()["results"][0]
        assert server.get("/livez").status_code == 200
        assert server.get("/metrics").status_code == 200
    finally:
        stop(tracking)


# --------------------------------------------------------------------------- packaging


def test_package_lists_the_champions_and_the_bento_serves_them(
    champion_store: str, nightly_run_dir: Path, tmp_path: Path
):
    home = tmp_path / "bentoml"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTFOLIO_", "MLFLOW_", "BENTOML_"))
    }
    env.update(
        {
            "MLFLOW_TRACKING_URI": champion_store,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
        }
    )
    portfolio = Path(sys.executable).with_name("portfolio")
    built = subprocess.run(
        [str(portfolio), "package"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr[-3000:]

    info = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bentoml", "get", "portfolio:latest", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert sorted(m["tag"].split(":")[0] for m in info["models"]) == [
        "portfolio-churn",
        "portfolio-upsell",
    ]
    bento_path = home / "bentos" / "portfolio" / info["version"]
    requirements = (bento_path / "env" / "python" / "requirements.txt").read_text()
    assert "lightgbm==" in requirements and "bentoml==" in requirements
    assert "pytest" not in requirements
    assert (bento_path / "src" / "serving" / "service.py").is_file()
    stored = [p for p in (home / "models").glob("portfolio-*/*") if p.is_dir()]
    assert len(stored) == 2
    for model_dir in stored:
        assert (model_dir / "booster.txt").is_file() and (model_dir / "model.json").is_file()
        assert not list(model_dir.rglob("*.pkl"))

    # Served from the bento with no reachable registry: the packaged champions answer.
    serve_env = {
        **env,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "PORTFOLIO_SNAPSHOT": str(nightly_run_dir),
    }
    server = start_service(serve_env, tmp_path / "bento.log", target="portfolio:latest")
    try:
        wait_for(server, "/readyz")
        account_id = str(
            pd.read_parquet(nightly_run_dir / "features.parquet")["account_id"].iloc[0]
        )
        response = server.post("/score", {"accounts": [{"account_id": account_id}]})
        assert response.status_code == 200
        result = response.json()["results"][0]
        assert result["churn_model"] == "churn" and result["churn_model_version"] == "1"
        assert 0 <= result["p_churn"] <= 1
    finally:
        stop(server.process)
