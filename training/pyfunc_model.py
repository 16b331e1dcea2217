"""The MLflow pyfunc wrapper, logged with MLflow's "models from code".

MLflow copies this file into the logged model and executes it when the model
is loaded; the `set_model` call at the bottom is how "models from code" names
the model object (it is the reason this file, unlike the rest of the package,
does something when it runs). Nothing is pickled: `load_context` reads the
LightGBM text file and the JSON written by `CalibratedBoostedClassifier.save`
from the model's `calibrated_model` artifact. Loading needs the
`account-portfolio` package (for `training.model`) in the environment.

`predict` takes raw feature rows (a DataFrame with the model's feature
columns; absent columns count as missing) and returns the calibrated
probability of class 1 for each row.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class CalibratedModelPyfunc(PythonModel):
    """Calibrated probabilities from a `CalibratedBoostedClassifier` stored as text + JSON."""

    def load_context(self, context):
        from training.model import CalibratedBoostedClassifier
        from training.tracking import MODEL_ARTIFACT

        self.model = CalibratedBoostedClassifier.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params=None):
        return self.model.predict_proba(model_input)


mlflow.models.set_model(CalibratedModelPyfunc())
