"""A saved model whose files were truncated or altered is refused, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.model import (
    BOOSTER_FILE,
    INTEGRITY_KEY,
    MODEL_JSON_FILE,
    CalibratedBoostedClassifier,
    ModelIntegrityError,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(
        {
            "usage": rng.normal(size=600),
            "segment": pd.Series(rng.choice(["smb", "ent"], size=600), dtype="str"),
        }
    )
    y = (rng.random(600) < 1 / (1 + np.exp(X["usage"]))).astype(int).to_numpy()
    model = CalibratedBoostedClassifier(n_estimators=20, num_leaves=7)
    model.fit(X.iloc[:400], y[:400], X.iloc[400:], y[400:], metadata={"target": "churn", 1: "x"})
    return model.save(tmp_path_factory.mktemp("model") / "m")


def _copy(saved: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    for name in (BOOSTER_FILE, MODEL_JSON_FILE):
        (folder / name).write_bytes((saved / name).read_bytes())
    return folder


def test_the_saved_model_records_both_hashes_and_loads(saved: Path) -> None:
    state = json.loads((saved / MODEL_JSON_FILE).read_text())
    assert set(state[INTEGRITY_KEY]) == {"booster_sha256", "model_json_sha256"}
    assert CalibratedBoostedClassifier.load(saved).predict_proba([{"usage": 0.1}]).shape == (1,)


def test_a_truncated_booster_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    text = (folder / BOOSTER_FILE).read_text()
    (folder / BOOSTER_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(ModelIntegrityError, match=rf"{BOOSTER_FILE} of .*does not match"):
        CalibratedBoostedClassifier.load(folder)


def test_a_changed_threshold_in_the_booster_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    text = (folder / BOOSTER_FILE).read_text()
    position = text.index("threshold=") + len("threshold=")
    (folder / BOOSTER_FILE).write_text(text[:position] + "9" + text[position:])
    with pytest.raises(ModelIntegrityError, match=BOOSTER_FILE):
        CalibratedBoostedClassifier.load(folder)


def test_a_changed_calibrator_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    state = json.loads((folder / MODEL_JSON_FILE).read_text())
    calibrator = state["calibrator"]
    key = "y" if calibrator["method"] == "isotonic" else "a"
    if key == "y":
        calibrator["y"][0] = calibrator["y"][0] + 0.25
    else:
        calibrator["a"] = calibrator["a"] * 2
    (folder / MODEL_JSON_FILE).write_text(json.dumps(state, indent=1))
    with pytest.raises(ModelIntegrityError, match=rf"{MODEL_JSON_FILE} of .*does not match"):
        CalibratedBoostedClassifier.load(folder)


def test_a_truncated_model_json_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    text = (folder / MODEL_JSON_FILE).read_text()
    (folder / MODEL_JSON_FILE).write_text(text[: len(text) // 3])
    with pytest.raises(ModelIntegrityError, match=rf"{MODEL_JSON_FILE} of .* is not valid JSON"):
        CalibratedBoostedClassifier.load(folder)


def test_garbage_bytes_are_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    (folder / BOOSTER_FILE).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelIntegrityError, match="not UTF-8"):
        CalibratedBoostedClassifier.load(folder)


def test_a_model_saved_without_the_record_still_loads(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    state = json.loads((folder / MODEL_JSON_FILE).read_text())
    del state[INTEGRITY_KEY]
    (folder / MODEL_JSON_FILE).write_text(json.dumps(state))
    loaded = CalibratedBoostedClassifier.load(folder)
    assert loaded.predict_proba([{"usage": 0.1}]).shape == (1,)


def test_an_unreadable_booster_without_the_record_is_refused_naming_the_file(
    saved: Path, tmp_path: Path
) -> None:
    folder = _copy(saved, tmp_path)
    state = json.loads((folder / MODEL_JSON_FILE).read_text())
    del state[INTEGRITY_KEY]
    (folder / MODEL_JSON_FILE).write_text(json.dumps(state))
    (folder / BOOSTER_FILE).write_text("tree\nthis is not a model\n")
    with pytest.raises(ModelIntegrityError, match=rf"{BOOSTER_FILE} of .*LightGBM"):
        CalibratedBoostedClassifier.load(folder)
