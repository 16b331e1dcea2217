"""Faults: the service and the nightly job when processes die, the registry goes away or a
model file is corrupted.

Service faults run against real servers on 127.0.0.1 under traffic from
`benchmarks.traffic` (clients that never retry: every refused or reset
connection counts). The long ones are marked `reliability` (`make
reliability`); the corrupted-champion `portfolio score` check and the model
integrity unit tests run in the normal suite. Measured figures are printed
(`pytest -rP`) and recorded in docs/operations.md ("Faults").

Corrupted models are registered as new versions whose artifacts are a copy of
the champion's with one file damaged: the session's artifact store is shared
by every test module, so it is never altered in place.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from service_harness import (
    OUTPUT_FILES,
    REPO,
    Server,
    ServiceHome,
    free_port,
    run_output_bytes,
    start_service,
    start_with_cli,
    stop,
    wait_for,
    wait_until,
)

from benchmarks.load import traffic_plan
from benchmarks.serving import feature_records
from benchmarks.traffic import PlannedRequest, TimedAction, run_traffic
from training.tracking import MODEL_ARTIFACT, registered_model_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKER_MODULE = "_bentoml_impl.worker.service"
EXIT_SECONDS = 20.0


def _plan(home: ServiceHome) -> list[PlannedRequest]:
    ids, records = feature_records(home.run_dir)
    return traffic_plan(ids, records, str(home.features["segment"].dropna().iloc[0]))


def _workers(server: Server) -> list[psutil.Process]:
    """The BentoML worker processes under the server's process."""
    try:
        children = psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _is_worker(p)]


def _is_worker(process: psutil.Process) -> bool:
    try:
        return WORKER_MODULE in " ".join(process.cmdline()) and process.status() != "zombie"
    except psutil.Error:
        return False


def _churn_version(server: Server, home: ServiceHome) -> str:
    response = server.post("/score", {"accounts": [{"account_id": home.account_ids(1)[0]}]})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["churn_model_version"]


def _promote(tracking_uri: str, target: str, version: str) -> None:
    from training.registry import promote

    promote(target, version, "fault test", uri=tracking_uri)


def _report(name: str, figures: dict) -> None:
    print(f"{name}: {json.dumps(figures)}")


# --------------------------------------------------------------------------- signals


@pytest.mark.reliability
def test_sigterm_under_load_finishes_requests_in_flight_and_exits(service_home: ServiceHome):
    """SIGTERM to `portfolio serve` (what a container runtime sends): every request started
    before the signal is answered, and the whole process group is gone within 20 s."""
    server = start_with_cli(service_home.env("sigterm"), service_home.root / "sigterm.log")
    try:
        wait_for(server, "/readyz")
        main = psutil.Process(server.process.pid)
        processes = [main, *main.children(recursive=True)]
        assert len(_workers(server)) == 2

        def terminate() -> float:
            os.kill(server.process.pid, signal.SIGTERM)
            sent = time.perf_counter()
            server.process.wait(timeout=60)
            return time.perf_counter() - sent

        action = TimedAction(5.0, "sigterm", terminate)
        result = asyncio.run(run_traffic(server.url, _plan(service_home), 8, 8.0, actions=[action]))
        signalled = result.actions["sigterm"].started
        before = [s for s in result.samples if s.started < signalled]
        failed_before = [s for s in before if not s.ok]
        exit_seconds = result.actions["sigterm"].result
        _, alive = psutil.wait_procs(processes, timeout=1)
        _report(
            "sigterm",
            {
                "requests_before_signal": len(before),
                "failed_before_signal": len(failed_before),
                "requests_after_signal": len(result.samples) - len(before),
                "exit_seconds": round(exit_seconds, 2),
                "exit_code": server.process.returncode,
            },
        )
        assert len(before) > 100
        assert not failed_before, [(s.started, s.error) for s in failed_before[:5]]
        assert exit_seconds < EXIT_SECONDS
        assert server.process.returncode == 0, server.log_text()[-2000:]
        assert not alive, [p.pid for p in alive]
        assert "Traceback" not in server.log_text()
    finally:
        stop(server.process)


@pytest.mark.reliability
def test_a_worker_killed_under_load_is_restarted_and_errors_stay_under_a_thousandth(
    service_home: ServiceHome,
):
    """SIGKILL to one of `portfolio serve`'s two workers during 60 s of traffic at 8 clients.

    Only requests the killed worker was answering can fail (nothing is
    retried); the other worker answers the rest while BentoML starts a new one,
    which takes connections only once it has loaded the models.
    """
    server = start_with_cli(service_home.env("sigkill"), service_home.root / "sigkill.log")
    try:
        wait_for(server, "/readyz")
        wait_until(lambda: len(_workers(server)) == 2, message="portfolio serve runs 2 workers")
        before = {p.pid for p in _workers(server)}

        def kill_one() -> int:
            victim = sorted(before)[0]
            os.kill(victim, signal.SIGKILL)
            return victim

        action = TimedAction(10.0, "sigkill", kill_one)
        result = asyncio.run(
            run_traffic(server.url, _plan(service_home), 8, 60.0, actions=[action])
        )
        killed_at = result.actions["sigkill"].started
        failed = result.failed
        # in flight on the killed worker: sent before the kill, or on its connection before
        # the client saw the reset
        in_flight = [s for s in failed if s.started <= killed_at + 0.5]
        rate = len(failed) / len(result.samples)
        _report(
            "sigkill",
            {
                "requests": len(result.samples),
                "failed": len(failed),
                "failed_in_flight_at_kill": len(in_flight),
                "error_rate": round(rate, 6),
                "errors": [s.error[:80] for s in failed[:3]],
                "p99_ms": result.summary()["p99_ms"],
            },
        )
        assert rate < 0.001, [s.error for s in failed[:5]]
        assert len(in_flight) == len(failed), "requests failed after the kill"
        assert len(failed) <= 8  # at most one request per client was in flight
        wait_until(
            lambda: len(_workers(server)) == 2, timeout=180, message="the worker was not restarted"
        )
        replaced = {p.pid for p in _workers(server)} - before
        assert len(replaced) == 1
        assert server.get("/readyz").status_code == 200
    finally:
        stop(server.process)


# --------------------------------------------------------------------------- the tracking server


def _start_tracking_server(home: ServiceHome, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            home.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=log.parent,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _tracking_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.reliability
def test_the_old_champion_keeps_serving_while_the_tracking_server_is_down(
    service_home: ServiceHome, tmp_path: Path
):
    """Served from an `mlflow server`; the server stops; a new champion is promoted in its
    store meanwhile; the service keeps answering with the old one, says why in its log, and
    serves the new one once the tracking server is back."""
    port = free_port()
    tracking_log = tmp_path / "mlflow.log"
    tracking = _start_tracking_server(service_home, port, tracking_log)
    server = None
    try:
        wait_until(lambda: _tracking_answers(port), timeout=120, message="mlflow server start")
        env = service_home.env("outage", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
        server = start_service(env, service_home.root / "outage.log")
        wait_for(server, "/readyz")
        old = _churn_version(server, service_home)

        stop(tracking)
        wait_until(
            lambda: "cannot check the champion models" in server.log_text(),
            message="the failed reload was not logged",
        )
        new = register_copy(service_home.tracking_uri, "churn", old)
        _promote(
            service_home.tracking_uri, "churn", new
        )  # straight into the store: the server is down
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert server.get("/readyz").status_code == 200
            assert _churn_version(server, service_home) == old
            time.sleep(0.5)
        line = next(
            line for line in server.log_text().splitlines() if "cannot check the champion" in line
        )
        assert f"127.0.0.1:{port}" in line, line
        assert "no @champion" not in line, line  # an unreachable registry is not a missing model

        tracking = _start_tracking_server(service_home, port, tracking_log)
        wait_until(
            lambda: _churn_version(server, service_home) == new,
            timeout=120,
            message="the new champion was not served once the tracking server was back",
        )
        assert f"serving churn v{new}" in server.log_text()
        _report("tracking_outage", {"old": old, "new": new, "log_line": line[-300:]})
    finally:
        if server is not None:
            stop(server.process)
        stop(tracking)


# --------------------------------------------------------------------------- corrupted models


def register_copy(tracking_uri: str, target: str, of_version: str) -> str:
    from benchmarks.load import register_copy as register

    return register(tracking_uri, target, of_version)


def _artifact_dir(tracking_uri: str, target: str, version: str) -> Path:
    """The local folder holding `version`'s booster.txt and model.json."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    root = client.get_model_version_download_uri(registered_model_name(target), version)
    return Path(root.removeprefix("file://")) / "artifacts" / MODEL_ARTIFACT


def _truncate_booster(folder: Path) -> str:
    path = folder / "booster.txt"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return "booster.txt"


def _garble_calibrator(folder: Path) -> str:
    path = folder / "model.json"
    state = json.loads(path.read_text())
    calibrator = state["calibrator"]
    for key in ("y", "x"):
        if key in calibrator:
            calibrator[key] = [0.5 for _ in calibrator[key]]
            break
    else:
        calibrator["a"] = calibrator.get("a", 1.0) * 3 + 1
    path.write_text(json.dumps(state, indent=1))
    return "model.json"


CORRUPTIONS: dict[str, Callable[[Path], str]] = {
    "truncated booster": _truncate_booster,
    "garbled calibrator": _garble_calibrator,
}


def register_corrupted(
    tracking_uri: str, target: str, of_version: str, damage: Callable[[Path], str], where: Path
) -> tuple[str, str]:
    """A new version of `target`: a copy of `of_version`'s artifacts with one file damaged.

    Returns (version, damaged file name)."""
    from mlflow.tracking import MlflowClient

    source = _artifact_dir(tracking_uri, target, of_version)
    root = where / f"{target}-corrupted-{damage.__name__}"
    copy = root / "artifacts" / MODEL_ARTIFACT
    shutil.copytree(source, copy)
    damaged = damage(copy)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.create_model_version(registered_model_name(target), root.as_uri())
    return str(version.version), damaged


@pytest.fixture(scope="module")
def corruption_server(service_home: ServiceHome) -> Iterator[Server]:
    server = start_service(service_home.env("corrupt"), service_home.root / "corrupt.log")
    try:
        wait_for(server, "/readyz")
        yield server
    finally:
        stop(server.process)


@pytest.mark.reliability
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupted_champion_is_refused_by_the_running_service(
    corruption_server: Server, service_home: ServiceHome, corruption: str
):
    old = _churn_version(corruption_server, service_home)
    version, damaged = register_corrupted(
        service_home.tracking_uri, "churn", old, CORRUPTIONS[corruption], service_home.root
    )
    _promote(service_home.tracking_uri, "churn", version)
    try:
        refusal = f"{registered_model_name('churn')} version {version} cannot be used: {damaged}"
        wait_until(
            lambda: refusal in corruption_server.log_text(),
            message=f"no log line saying {refusal!r}",
        )
        line = next(x for x in corruption_server.log_text().splitlines() if refusal in x)
        assert "keeping the served state" in line
        assert "corrupted" in line or "not valid JSON" in line or "LightGBM" in line
        for _ in range(5):
            assert _churn_version(corruption_server, service_home) == old
            time.sleep(0.3)
        assert corruption_server.get("/readyz").status_code == 200
        _report(f"corrupted {corruption}", {"log_line": line[-400:]})
    finally:
        _promote(service_home.tracking_uri, "churn", old)


def test_portfolio_score_with_a_corrupted_champion_fails_naming_it_and_writes_nothing(
    champion_store: str, nightly_sources: Path, tmp_path: Path
):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy2(champion_store.removeprefix("sqlite:///"), store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    from training.registry import champion_version

    current = champion_version("upsell", uri=uri)
    version, damaged = register_corrupted(uri, "upsell", current, _truncate_booster, store)
    _promote(uri, "upsell", version)
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PORTFOLIO_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("portfolio")),
            "score",
            "--sources",
            str(nightly_sources),
            "--out",
            str(runs / "latest"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert done.returncode == 1, output[-2000:]
    assert (
        f"{registered_model_name('upsell')} version {version} cannot be used: {damaged}" in output
    )
    assert "does not match the sha256" in output
    assert "Traceback" not in output
    written = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    assert [name for name in written if not name.endswith(".lock")] == []


# --------------------------------------------------------------------------- the nightly job


# Runs the job and stalls it (a marker file, then a long sleep) at a kill point: the
# first progress report of a stage, or (writing) once portfolio.json is written into the
# staging folder, after the three Parquet files.
KILLED_JOB = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import serving.batch as batch

    sources, out, marker, point = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    partitions = int(sys.argv[5])

    def stall():
        marker.write_text(point)
        time.sleep(600)

    def progress(stage, completed, total):
        if stage == point != "write":
            stall()

    if point == "write":
        real_write_json = batch.write_json

        def write_json_then_stall(document, path):
            real_write_json(document, path)
            stall()

        batch.write_json = write_json_then_stall
    settings = batch.NightlyJobSettings(partitions=partitions)
    batch.run_nightly_job(sources, out_dir=out, settings=settings, progress=progress)
    """
)

# (stage, partitions): killed in the features stage of a partitioned run, the job leaves
# the partitions' scratch folder behind, which the next run removes.
KILL_POINTS = (("features", 1), ("score", 1), ("write", 1), ("features", 3))


@pytest.fixture(scope="module")
def clean_run(nightly_sources: Path, champion_store: str, tmp_path_factory) -> Path:
    from serving.batch import run_nightly_job

    return run_nightly_job(
        nightly_sources, out_dir=tmp_path_factory.mktemp("clean") / "latest"
    ).out_dir


@pytest.mark.reliability
@pytest.mark.parametrize(("point", "partitions"), KILL_POINTS)
def test_a_job_killed_mid_run_publishes_nothing_and_a_rerun_is_complete_and_identical(
    clean_run: Path,
    nightly_sources: Path,
    champion_store: str,
    tmp_path: Path,
    point: str,
    partitions: int,
):
    from serving.batch import run_nightly_job

    runs = tmp_path / "runs"
    out = runs / "latest"
    marker = tmp_path / "reached"
    script = tmp_path / "killed_job.py"
    script.write_text(KILLED_JOB)
    process = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(nightly_sources),
            str(out),
            str(marker),
            point,
            str(partitions),
        ],
        env=os.environ.copy(),
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, f"the job ended before {point}"
            assert time.monotonic() < deadline, f"the job never reached {point}"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    hidden = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    assert not out.exists(), "a killed job published a run folder"
    assert [n for n in hidden if not n.startswith(".")] == []
    staged = [n for n in hidden if n.startswith(".latest.tmp-")]
    if point == "write":
        assert staged, "the killed job had started writing into a staging folder"
        assert any((runs / staged[0]).iterdir())
    if partitions > 1:
        assert [n for n in hidden if n.startswith(".work-partitions-")], hidden

    run_nightly_job(nightly_sources, out_dir=out)
    assert run_output_bytes(out) == run_output_bytes(clean_run)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert [p.name for p in runs.iterdir() if not p.name.endswith(".lock")] == ["latest"]
