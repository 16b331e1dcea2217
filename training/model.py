"""A calibrated LightGBM binary classifier that stores without pickle.

`CalibratedBoostedClassifier` follows the scikit-learn contract: `__init__`
only stores hyper-parameters, `fit` returns `self`, learned attributes end in
an underscore. It is saved as two files: `booster.txt` (LightGBM's native text
format) and `model.json` (feature names, category levels, the calibrator as
plain numbers, the training reference distribution and metadata).
`model.json` records the sha256 of `booster.txt` and of its own content
(`integrity`); loading checks both, so a truncated or altered file is refused
with `ModelIntegrityError` naming the file instead of giving other scores.

How rows become numbers is fixed at fit time by `FeatureEncoder`: numeric
columns are read as float64, categorical columns are mapped to the integer
code of their level in the training data (an unseen level, or a missing
value, becomes NaN, which LightGBM treats as missing), and columns the model
knows but the input lacks become NaN.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from training.reference import build_reference

MODEL_FORMAT = "calibrated-boosted-classifier"
MODEL_FORMAT_VERSION = 1
BOOSTER_FILE = "booster.txt"
MODEL_JSON_FILE = "model.json"
PROBABILITY_FLOOR = 1e-6

Rows = pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]
CalibrationMethod = Literal["auto", "isotonic", "platt"]
INTEGRITY_KEY = "integrity"


class ModelIntegrityError(ValueError):
    """A saved model's file is unreadable, or differs from what was saved (the message names it)."""


# --------------------------------------------------------------------------- encoding


def _is_categorical_dtype(series: pd.Series) -> bool:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return False
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _level_strings(series: pd.Series) -> pd.Series:
    """Values of a categorical column as pandas strings (missing stays missing)."""
    return series.astype("string")


def numeric_column(series: pd.Series, name: str) -> np.ndarray:
    """A column as float64; raises a ValueError naming the column when a value is not a number."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna()
    if bad.any():
        examples = series[bad].astype(str).unique()[:3].tolist()
        rows = series.index[bad][:3].tolist()
        raise ValueError(
            f"column {name!r} must be numeric; {int(bad.sum())} value(s) are not numbers, "
            f"e.g. {examples} at rows {rows}"
        )
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


class FeatureEncoder:
    """Maps raw feature rows to the float matrix the booster reads.

    `fit(X)` fixes the feature order and the levels of each categorical column
    (sorted, from the rows given). `transform` accepts a DataFrame, one record
    (a mapping) or a list of records; the record path uses no pandas.
    """

    def __init__(self, categorical_features: Sequence[str] | None = None) -> None:
        self.categorical_features = categorical_features

    def fit(self, X: pd.DataFrame) -> FeatureEncoder:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"fit needs a pandas DataFrame of features, got {type(X).__name__}")
        if X.shape[1] == 0:
            raise ValueError("no feature columns to fit on")
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            duplicated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicated feature columns: {duplicated}")
        if self.categorical_features is None:
            categorical = [n for n in names if _is_categorical_dtype(X[n])]
        else:
            unknown = [c for c in self.categorical_features if c not in names]
            if unknown:
                raise ValueError(f"categorical features not among the columns: {unknown}")
            categorical = list(self.categorical_features)
        categories: dict[str, list[str]] = {}
        for name in categorical:
            levels = _level_strings(X[name]).dropna().unique().tolist()
            categories[name] = sorted(levels)
        self.feature_names_ = names
        self.categories_ = categories
        self._compile()
        return self

    def _compile(self) -> None:
        self._level_index = {
            name: {level: float(i) for i, level in enumerate(levels)}
            for name, levels in self.categories_.items()
        }

    @classmethod
    def from_state(cls, feature_names: Sequence[str], categories: Mapping[str, Sequence[str]]):
        encoder = cls(categorical_features=list(categories))
        encoder.feature_names_ = list(feature_names)
        encoder.categories_ = {k: list(v) for k, v in categories.items()}
        encoder._compile()
        return encoder

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, n in enumerate(self.feature_names_) if n in self.categories_]

    def transform(self, X: Rows) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            return self._transform_frame(X)
        if isinstance(X, Mapping):
            return self._transform_records([X])
        if isinstance(X, Sequence) and not isinstance(X, str | bytes):
            return self._transform_records(X)
        raise TypeError(
            f"features must be a DataFrame, a mapping or a list of mappings, got {type(X).__name__}"
        )

    def _transform_frame(self, X: pd.DataFrame) -> np.ndarray:
        n = len(X)
        matrix = np.full((n, len(self.feature_names_)), np.nan, dtype=np.float64)
        for j, name in enumerate(self.feature_names_):
            if name not in X.columns:
                continue
            column = X[name]
            if name in self.categories_:
                codes = _level_strings(column).map(self._level_index[name])
                matrix[:, j] = codes.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                matrix[:, j] = numeric_column(column, name)
        return matrix

    def _transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        nan = math.nan
        rows = []
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"record {i} must be a mapping, got {type(record).__name__}")
            row = []
            for name in self.feature_names_:
                value = record.get(name)
                if value is None:
                    row.append(nan)
                elif name in self._level_index:
                    key = value if isinstance(value, str) else str(value)
                    row.append(self._level_index[name].get(key, nan))
                else:
                    try:
                        row.append(float(value))
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"feature {name!r} of record {i} must be a number, got {value!r}"
                        ) from None
            rows.append(row)
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(self.feature_names_))


# --------------------------------------------------------------------------- calibration


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return {
        "method": "isotonic",
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
    }


def fit_platt(raw: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def apply_calibrator(calibrator: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    """Calibrated probabilities from raw booster scores (log-odds)."""
    if calibrator["method"] == "isotonic":
        p = np.interp(raw, calibrator["x"], calibrator["y"])
    elif calibrator["method"] == "platt":
        p = _sigmoid(calibrator["a"] * raw + calibrator["b"])
    elif calibrator["method"] == "identity":
        p = _sigmoid(raw)
    else:
        raise ValueError(f"unknown calibration method {calibrator['method']!r}")
    return np.clip(p, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)


_CALIBRATORS = {"isotonic": fit_isotonic, "platt": fit_platt}


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, method: CalibrationMethod, folds: int, seed: int
) -> dict[str, Any]:
    """Fit the calibrator; with `auto`, pick isotonic or Platt by cross-validated Brier score.

    Both methods are fitted on k-1 folds of the calibration rows and scored on
    the remaining fold, so the choice is not biased towards the more flexible
    isotonic map. Ties (and calibration sets too small to split) go to Platt.
    """
    if method != "auto":
        return _CALIBRATORS[method](raw, y)
    n_minority = int(min(y.sum(), len(y) - y.sum()))
    k = min(folds, n_minority)
    if k < 2:
        calibrator = fit_platt(raw, y)
        calibrator["selection"] = {"reason": "too few positives or negatives to compare"}
        return calibrator
    scores: dict[str, dict[str, float]] = {m: {"brier": 0.0, "log_loss": 0.0} for m in _CALIBRATORS}
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fit_idx, test_idx in splitter.split(raw.reshape(-1, 1), y):
        for name, fit in _CALIBRATORS.items():
            p = apply_calibrator(fit(raw[fit_idx], y[fit_idx]), raw[test_idx])
            yt = y[test_idx]
            scores[name]["brier"] += float(np.sum((p - yt) ** 2)) / len(y)
            scores[name]["log_loss"] += float(
                -np.sum(yt * np.log(p) + (1 - yt) * np.log(1 - p))
            ) / len(y)
    best = "isotonic" if scores["isotonic"]["brier"] < scores["platt"]["brier"] else "platt"
    calibrator = _CALIBRATORS[best](raw, y)
    calibrator["selection"] = {
        "criterion": "cross-validated brier",
        "folds": k,
        **{f"{m}_{k_}": v for m, s in scores.items() for k_, v in s.items()},
    }
    return calibrator


# --------------------------------------------------------------------------- the model


def _binary_target(y: Any, name: str = "y") -> np.ndarray:
    values = pd.Series(np.asarray(y)).to_numpy()
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    series = pd.Series(values)
    if series.isna().any():
        raise ValueError(f"{name} has {int(series.isna().sum())} missing label(s)")
    as_float = pd.to_numeric(series, errors="coerce").astype("float64")
    if as_float.isna().any() or not as_float.isin([0.0, 1.0]).all():
        seen = sorted({str(v) for v in series.unique()})[:5]
        raise ValueError(f"{name} must hold only 0/1 labels, got {seen}")
    return as_float.to_numpy()


class CalibratedBoostedClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM gradient boosting with an isotonic or Platt calibration map.

    Parameters are LightGBM's (scikit-learn names) plus:
    calibration: "auto" (isotonic or Platt, whichever has the lower
        cross-validated Brier score on the calibration rows), "isotonic" or "platt".
    calibration_folds: folds used to choose the calibrator and, when `fit` gets
        no calibration rows, to produce out-of-fold scores to calibrate on.
    categorical_features: column names to treat as categorical; None detects
        string, object and category columns.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        max_depth: int = -1,
        min_child_samples: int = 20,
        min_split_gain: float = 0.0,
        subsample: float = 1.0,
        subsample_freq: int = 0,
        colsample_bytree: float = 1.0,
        reg_alpha: float = 0.0,
        reg_lambda: float = 0.0,
        cat_smooth: float = 10.0,
        min_data_per_group: int = 100,
        max_bin: int = 255,
        calibration: CalibrationMethod = "auto",
        calibration_folds: int = 5,
        categorical_features: Sequence[str] | None = None,
        random_state: int = 0,
        n_jobs: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.min_split_gain = min_split_gain
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.cat_smooth = cat_smooth
        self.min_data_per_group = min_data_per_group
        self.max_bin = max_bin
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.categorical_features = categorical_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- LightGBM parameters -------------------------------------------------------

    def booster_params(self) -> dict[str, Any]:
        """The LightGBM training parameters (without the number of rounds)."""
        return lightgbm_params(
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            max_depth=self.max_depth,
            min_child_samples=self.min_child_samples,
            min_split_gain=self.min_split_gain,
            subsample=self.subsample,
            subsample_freq=self.subsample_freq,
            colsample_bytree=self.colsample_bytree,
            reg_alpha=self.reg_alpha,
            reg_lambda=self.reg_lambda,
            cat_smooth=self.cat_smooth,
            min_data_per_group=self.min_data_per_group,
            max_bin=self.max_bin,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )

    def _train_booster(self, matrix: np.ndarray, y: np.ndarray, encoder: FeatureEncoder):
        dataset = lgb.Dataset(
            matrix,
            label=y,
            feature_name=booster_feature_names(encoder.feature_names_),
            categorical_feature=encoder.categorical_indices,
            params={"max_bin": self.max_bin, "verbosity": -1},
            free_raw_data=True,
        )
        return lgb.train(self.booster_params(), dataset, num_boost_round=int(self.n_estimators))

    # -- fit ---------------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        X_cal: pd.DataFrame | None = None,
        y_cal: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> CalibratedBoostedClassifier:
        """Train the booster on (X, y) and calibrate it.

        With calibration rows (X_cal, y_cal) the calibrator is fitted on the
        booster's scores of those rows (for a time split: later snapshots).
        Without them it is fitted on out-of-fold scores of X from
        `calibration_folds` boosters trained on the other folds.
        `metadata` (JSON-serialisable) is kept in `metadata_` and saved.
        """
        labels = _binary_target(y, "y")
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)}")
        if labels.min() == labels.max():
            raise ValueError("y holds a single class; both 0 and 1 are needed to train")
        encoder = FeatureEncoder(self.categorical_features).fit(X)
        matrix = encoder.transform(X)
        booster = self._train_booster(matrix, labels, encoder)

        if X_cal is not None:
            cal_labels = _binary_target(y_cal, "y_cal")
            if len(cal_labels) != len(X_cal):
                raise ValueError(f"X_cal has {len(X_cal)} rows but y_cal has {len(cal_labels)}")
            cal_raw = booster.predict(encoder.transform(X_cal), raw_score=True)
            calibration_source = "calibration rows"
        else:
            cal_labels = labels
            cal_raw = self._out_of_fold_raw(matrix, labels, encoder)
            calibration_source = f"out-of-fold scores ({self.calibration_folds} folds)"
        calibrator = choose_calibrator(
            cal_raw, cal_labels, self.calibration, self.calibration_folds, self.random_state
        )
        calibrator["fitted_on"] = calibration_source
        calibrator["n_rows"] = len(cal_labels)

        self.encoder_ = encoder
        self.feature_names_ = encoder.feature_names_
        self.categories_ = encoder.categories_
        self.feature_names_in_ = np.asarray(self.feature_names_, dtype=object)
        self.n_features_in_ = len(self.feature_names_)
        self.classes_ = np.array([0, 1])
        self.booster_ = booster
        self.calibrator_ = calibrator
        self.reference_ = build_reference(
            matrix, self.feature_names_, self.categories_, apply_calibrator(calibrator, cal_raw)
        )
        self.metadata_ = dict(metadata or {})
        return self

    def _out_of_fold_raw(
        self, matrix: np.ndarray, labels: np.ndarray, encoder: FeatureEncoder
    ) -> np.ndarray:
        n_minority = int(min(labels.sum(), len(labels) - labels.sum()))
        k = min(self.calibration_folds, n_minority)
        if k < 2:
            raise ValueError(
                "too few positives or negatives to cross-fit a calibrator; pass X_cal/y_cal"
            )
        raw = np.empty(len(labels), dtype=np.float64)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        for fit_idx, held_idx in splitter.split(matrix, labels):
            fold_booster = self._train_booster(matrix[fit_idx], labels[fit_idx], encoder)
            raw[held_idx] = fold_booster.predict(matrix[held_idx], raw_score=True)
        return raw

    # -- scoring -----------------------------------------------------------------------

    def prepare(self, X: Rows) -> np.ndarray:
        """The float64 matrix the booster reads (categorical -> codes, absent -> NaN)."""
        check_is_fitted(self, "booster_")
        return self.encoder_.transform(X)

    def _predict(self, matrix: np.ndarray, **kwargs: Any) -> np.ndarray:
        # Few rows: one thread avoids OpenMP start-up cost on the service hot path.
        threads = {"num_threads": 1} if matrix.shape[0] < 2000 else {}
        return self.booster_.predict(matrix, **threads, **kwargs)

    def raw_score(self, X: Rows) -> np.ndarray:
        """Uncalibrated booster scores (log-odds)."""
        return self._predict(self.prepare(X), raw_score=True)

    def predict_proba(self, X: Rows) -> np.ndarray:
        """Calibrated probability of class 1, one per row (1-D)."""
        raw = self.raw_score(X)
        return apply_calibrator(self.calibrator_, raw)

    def predict(self, X: Rows, threshold: float = 0.5) -> np.ndarray:
        """Class labels (1 when the calibrated probability is at least `threshold`)."""
        return (self.predict_proba(X) >= threshold).astype(np.int64)

    def contributions(self, X: Rows) -> np.ndarray:
        """TreeSHAP contributions in raw-score space: n x (n_features + 1), last column the bias."""
        return self._predict(self.prepare(X), pred_contrib=True)

    def feature_importance(self, importance_type: str = "gain") -> pd.Series:
        """Booster feature importance (gain or split), indexed by feature name, largest first."""
        check_is_fitted(self, "booster_")
        values = self.booster_.feature_importance(importance_type=importance_type)
        return pd.Series(values, index=self.feature_names_, name=importance_type).sort_values(
            ascending=False
        )

    # -- persistence -------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        check_is_fitted(self, "booster_")
        params = self.get_params()
        if params["categorical_features"] is not None:
            params["categorical_features"] = list(params["categorical_features"])
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "lightgbm_version": lgb.__version__,
            "params": params,
            "feature_names": self.feature_names_,
            "categories": self.categories_,
            "calibrator": self.calibrator_,
            "reference": self.reference_,
            "metadata": self.metadata_,
        }

    def save(self, directory: str | Path) -> Path:
        """Write `booster.txt` and `model.json` into `directory` (created if needed)."""
        check_is_fitted(self, "booster_")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        booster_text = self.booster_.model_to_string()
        # as it will be read back (string keys, lists), so the recorded hash matches at loading
        state = json.loads(json.dumps(self.to_json_dict(), allow_nan=False))
        state[INTEGRITY_KEY] = {
            "booster_sha256": _sha256(booster_text),
            "model_json_sha256": _sha256(_canonical_json(state)),
        }
        (directory / BOOSTER_FILE).write_text(booster_text, encoding="utf-8")
        (directory / MODEL_JSON_FILE).write_text(
            json.dumps(state, indent=1, allow_nan=False), encoding="utf-8"
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> CalibratedBoostedClassifier:
        """Read a model written by `save`."""
        directory = Path(directory)
        booster_path, json_path = directory / BOOSTER_FILE, directory / MODEL_JSON_FILE
        for path in (booster_path, json_path):
            if not path.is_file():
                raise FileNotFoundError(f"model file missing: {path}")
        try:
            booster_text = booster_path.read_text(encoding="utf-8")
            model_json = json_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ModelIntegrityError(
                f"a model file in {directory} is not UTF-8 text: {error}"
            ) from None
        return cls.from_strings(booster_text, model_json, source=str(directory))

    @classmethod
    def from_strings(
        cls, booster_text: str, model_json: str, source: str = MODEL_JSON_FILE
    ) -> CalibratedBoostedClassifier:
        """A model from the contents of `booster.txt` and `model.json` (e.g. sent to Spark workers).

        Raises ModelIntegrityError when `model.json` is not valid JSON, when
        either file differs from the sha256 recorded at saving (models saved
        before the record existed are not checked) or when LightGBM cannot
        read the booster; `source` (where the files came from) is named.
        """
        try:
            state = json.loads(model_json)
        except json.JSONDecodeError as error:
            raise ModelIntegrityError(
                f"{MODEL_JSON_FILE} of {source} is not valid JSON ({error}): the file is corrupted"
            ) from None
        if not isinstance(state, dict):
            raise ModelIntegrityError(f"{MODEL_JSON_FILE} of {source} is not a JSON object")
        _check_integrity(state, booster_text, source)
        if state.get("format") != MODEL_FORMAT:
            raise ValueError(f"{MODEL_JSON_FILE} of {source} is not a {MODEL_FORMAT} model")
        if state.get("format_version", 0) > MODEL_FORMAT_VERSION:
            raise ValueError(
                f"{MODEL_JSON_FILE} of {source} has format version {state['format_version']}; "
                f"this code reads up to {MODEL_FORMAT_VERSION}"
            )
        model = cls(**state["params"])
        encoder = FeatureEncoder.from_state(state["feature_names"], state["categories"])
        model.encoder_ = encoder
        model.feature_names_ = encoder.feature_names_
        model.categories_ = encoder.categories_
        model.feature_names_in_ = np.asarray(model.feature_names_, dtype=object)
        model.n_features_in_ = len(model.feature_names_)
        model.classes_ = np.array([0, 1])
        try:
            model.booster_ = lgb.Booster(model_str=booster_text)
        except lgb.basic.LightGBMError as error:
            raise ModelIntegrityError(
                f"{BOOSTER_FILE} of {source} is not a readable LightGBM model: {error}"
            ) from None
        model.calibrator_ = state["calibrator"]
        model.reference_ = state["reference"]
        model.metadata_ = state.get("metadata", {})
        return model


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical_json(state: Mapping[str, Any]) -> str:
    """`state` without its integrity record, as compact JSON with sorted keys."""
    content = {k: v for k, v in state.items() if k != INTEGRITY_KEY}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_integrity(state: Mapping[str, Any], booster_text: str, source: str) -> None:
    """ModelIntegrityError when a file differs from the sha256 recorded when it was saved."""
    recorded = state.get(INTEGRITY_KEY)
    if recorded is None:
        return  # saved before the record existed
    checks = (
        (BOOSTER_FILE, recorded.get("booster_sha256"), _sha256(booster_text)),
        (MODEL_JSON_FILE, recorded.get("model_json_sha256"), _sha256(_canonical_json(state))),
    )
    for name, expected, actual in checks:
        if expected != actual:
            raise ModelIntegrityError(
                f"{name} of {source} does not match the sha256 recorded when the model was "
                f"saved (recorded {str(expected)[:12]}..., found {actual[:12]}...): the file is "
                "corrupted or was changed"
            )


def booster_feature_names(names: Sequence[str]) -> list[str]:
    """Feature names LightGBM accepts (no JSON special characters or spaces), kept unique."""
    cleaned: list[str] = []
    for name in names:
        safe = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "feature"
        candidate, i = safe, 1
        while candidate in cleaned:
            candidate, i = f"{safe}_{i}", i + 1
        cleaned.append(candidate)
    return cleaned


def lightgbm_params(
    *,
    learning_rate: float,
    num_leaves: int,
    max_depth: int,
    min_child_samples: int,
    min_split_gain: float,
    subsample: float,
    subsample_freq: int,
    colsample_bytree: float,
    reg_alpha: float,
    reg_lambda: float,
    cat_smooth: float,
    min_data_per_group: int,
    max_bin: int,
    random_state: int,
    n_jobs: int,
) -> dict[str, Any]:
    """LightGBM's own parameter names for a deterministic binary model."""
    return {
        "objective": "binary",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "max_depth": max_depth,
        "min_data_in_leaf": min_child_samples,
        "min_gain_to_split": min_split_gain,
        "bagging_fraction": subsample,
        "bagging_freq": subsample_freq,
        "feature_fraction": colsample_bytree,
        "lambda_l1": reg_alpha,
        "lambda_l2": reg_lambda,
        "cat_smooth": cat_smooth,
        "min_data_per_group": min_data_per_group,
        "max_bin": max_bin,
        "seed": random_state,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": n_jobs,
        "verbosity": -1,
    }
