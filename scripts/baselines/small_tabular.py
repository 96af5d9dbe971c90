"""scikit-learn's defaults on the small tabular sets in tests/data, on the
same fixed splits (<name>.test_rows.txt), for the defaults check of
tests/e2e/learners.rs. Numeric columns are standardized for the linear and
network models (as Mass's default pipeline does); trees see raw values.

usage: python scripts/baselines/small_tabular.py   (needs numpy, pandas, scikit-learn)
Prints one JSON line per (dataset, model).
"""
import json
import os
import warnings

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data")
warnings.filterwarnings("ignore")

for name in ["iris", "wine", "breast_cancer", "diabetes"]:
    df = pd.read_csv(os.path.join(HERE, name + ".csv"))
    test = np.loadtxt(os.path.join(HERE, name + ".test_rows.txt"), dtype=int)
    mask = np.zeros(len(df), bool)
    mask[test] = True
    y = df.pop("label")
    X = df.to_numpy(float)
    regression = name == "diabetes"
    models = {
        "linear": make_pipeline(StandardScaler(), Ridge() if regression else LogisticRegression()),
        "mlp": make_pipeline(StandardScaler(), (MLPRegressor if regression else MLPClassifier)(random_state=0)),
        "gbdt": (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(random_state=0),
    }
    for model_name, model in models.items():
        model.fit(X[~mask], y[~mask])
        p = model.predict(X[mask])
        score = r2_score(y[mask], p) if regression else accuracy_score(y[mask], p)
        print(json.dumps({"dataset": name, "model": model_name, "r2" if regression else "accuracy": round(float(score), 4)}))
