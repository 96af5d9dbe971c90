"""scikit-learn-style estimators that train on a Mass mesh.

``MassClassifier`` and ``MassRegressor`` follow the estimator API
(``fit``, ``predict``, ``predict_proba``, ``score``, ``get_params``,
``set_params``), so existing scikit-learn code runs with one import
changed::

    from mass import MassClassifier
    clf = MassClassifier(nodes=["http://127.0.0.1:8080"], model="mlp:64", epochs=30)
    clf.fit(X_train, y_train)
    clf.score(X_test, y_test)

They inherit from scikit-learn's ``BaseEstimator`` and mixins when
scikit-learn is installed (so ``clone``, pipelines and grid search work),
and stand alone otherwise.

``fit`` uploads ``(X, y)`` as a new dataset with a unique name and trains
``model`` on it; the mesh holds back ``test_fraction`` of the rows to
score the model (a job needs test rows), reported in ``metrics_``.
Predictions come from the version of the model served at the time.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, Dict, List, Optional, Sequence

from . import _data
from .client import Client

try:  # pragma: no cover - depends on the environment
    from sklearn.base import BaseEstimator as _SkBase
    from sklearn.base import ClassifierMixin as _SkClassifier
    from sklearn.base import RegressorMixin as _SkRegressor

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

    class _SkBase:  # type: ignore[no-redef]
        pass

    class _SkClassifier:  # type: ignore[no-redef]
        pass

    class _SkRegressor:  # type: ignore[no-redef]
        pass


class NotFittedError(ValueError, AttributeError):
    """``predict`` or ``score`` before ``fit``."""


_PARAMS = (
    "nodes",
    "model",
    "name",
    "token",
    "ca_cert",
    "epochs",
    "learning_rate",
    "batch_size",
    "ensemble",
    "seed",
    "test_fraction",
    "shard_rows",
    "timeout",
    "progress",
)


class _MassEstimator(_SkBase):
    _task = "classification"

    def __init__(
        self,
        nodes: Optional[Sequence[str]] = None,
        model: str = "mlp:128",
        name: Optional[str] = None,
        token: Optional[str] = None,
        ca_cert: Optional[str] = None,
        epochs: Optional[int] = None,
        learning_rate: Optional[float] = None,
        batch_size: Optional[int] = None,
        ensemble: str = "single",
        seed: int = 0,
        test_fraction: float = 0.1,
        shard_rows: Optional[int] = None,
        timeout: Optional[float] = None,
        progress: bool = False,
        **job_options: Any,
    ) -> None:
        self.nodes = nodes
        self.model = model
        self.name = name
        self.token = token
        self.ca_cert = ca_cert
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.ensemble = ensemble
        self.seed = seed
        self.test_fraction = test_fraction
        self.shard_rows = shard_rows
        self.timeout = timeout
        self.progress = progress
        self._job_options = dict(job_options)

    # -- parameters (scikit-learn's protocol, **job_options included) --------

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters, extra job options included."""
        params = {key: getattr(self, key) for key in _PARAMS}
        params.update(self._job_options)
        return params

    def set_params(self, **params: Any) -> "_MassEstimator":
        """Sets parameters (any job option :meth:`mass.Client.train` takes)."""
        from .specs import JOB_OPTIONS

        for key, value in params.items():
            if key in _PARAMS:
                setattr(self, key, value)
            elif key in JOB_OPTIONS:
                self._job_options[key] = value
            else:
                raise ValueError(
                    f"invalid parameter {key!r} for {type(self).__name__}; "
                    f"valid: {', '.join(sorted(set(_PARAMS) | set(JOB_OPTIONS)))}"
                )
        return self

    def __repr__(self) -> str:
        """The parameters that differ from their defaults (never the token)."""
        import inspect

        defaults = {
            name: p.default
            for name, p in inspect.signature(_MassEstimator.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        shown = {
            k: v for k, v in self.get_params().items() if k != "token" and (k not in defaults or defaults[k] != v)
        }
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({inner})"

    # -- the mesh -------------------------------------------------------------

    def _client(self) -> Client:
        client = getattr(self, "_client_cache", None)
        key = (tuple(self.nodes) if self.nodes else None, self.token, self.ca_cert, self.timeout)
        if client is None or getattr(self, "_client_key", None) != key:
            kwargs: Dict[str, Any] = {"token": self.token, "ca_cert": self.ca_cert}
            if self.timeout is not None:
                kwargs["timeout"] = self.timeout
            client = Client(list(self.nodes) if self.nodes else None, **kwargs)
            self._client_cache = client
            self._client_key = key
        return client

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_client_cache", None)
        state.pop("_client_key", None)
        return state

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_name_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    def _upload_and_train(self, X: Any, y_sent: Any) -> None:
        client = self._client()
        base = self.name or ("mass-" + type(self).__name__.lower())
        dataset = f"{base}-{uuid.uuid4().hex[:12]}"
        columns = _data.column_names(X)
        if columns is not None:
            label = "label"
            while label in columns:
                label = "_" + label
            data: Any = (X, _data.pandas().Series(y_sent, name=label)) if _data.pandas() else (X, y_sent)
        else:
            label = "label"
            data = (X, y_sent)
        client.put_dataset(
            dataset,
            data,
            label=label,
            test=self.test_fraction,
            seed=self.seed,
            shard_rows=self.shard_rows,
        )
        options = dict(self._job_options)
        for key in ("epochs", "learning_rate", "batch_size", "ensemble", "seed"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        options["task"] = self._task
        job = client.train(dataset=dataset, model=self.name or dataset, learner=self.model, **options)
        record = job.wait(progress=self.progress)
        self.dataset_ = dataset
        self.model_name_ = record["spec"]["model"]
        self.job_id_ = job.id
        self.metrics_ = record.get("evaluation")
        self.feature_names_in_ = columns
        self.n_features_in_ = len(columns) if columns is not None else _width(X)

    def _rows(self, X: Any) -> Any:
        """Rows as the model reads them: by name when fitted on a DataFrame
        and given one, else the values in order."""
        if _data.is_dataframe(X) and self.feature_names_in_ is None:
            return X.to_numpy()
        return X

    def _detailed(self, X: Any) -> Any:
        self._check_fitted()
        return self._client().predict_detailed(self.model_name_, self._rows(X))


def _width(X: Any) -> int:
    if hasattr(X, "shape") and len(X.shape) == 2:
        return int(X.shape[1])
    rows = list(X)
    return len(rows[0]) if rows else 0


class MassClassifier(_SkClassifier, _MassEstimator):  # mixin first, as scikit-learn asks
    """A classifier trained on a Mass mesh.

    Args:
        nodes: node URLs (default ``$MASS_NODE`` or ``http://127.0.0.1:8080``).
        model: the learner: ``linear``, ``mlp:W1,W2,...`` or ``gbdt``.
        name: the model's name on the mesh (a fresh unique name when
            omitted; an existing name gets a new version).
        token, ca_cert, timeout: as :class:`mass.Client`.
        epochs, learning_rate, batch_size, ensemble, seed: job settings;
            ``**job_options`` takes any other :meth:`mass.Client.train` option.
        test_fraction: rows the mesh holds back to score the model
            (``metrics_``); jobs need test rows.
        shard_rows: rows per shard of the uploaded dataset.
        progress: show a progress bar while training (tqdm).

    Attributes after ``fit``: ``classes_``, ``n_features_in_``,
    ``feature_names_in_`` (DataFrame input), ``model_name_``, ``dataset_``,
    ``job_id_``, ``metrics_`` (the mesh's test metrics).
    """

    _task = "classification"
    _estimator_type = "classifier"

    def fit(self, X: Any, y: Any) -> "MassClassifier":
        """Uploads ``(X, y)`` as a new dataset and trains on the mesh; blocks
        until the job is over (raises :class:`mass.JobFailed` if it fails)."""
        labels = _data.as_list(y)
        np = _data.numpy()
        if np is not None:
            classes = np.unique(np.asarray(labels))
            index = {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(classes)}
            encoded = np.array([index[v] for v in np.asarray(labels).tolist()], dtype=np.int64)
        else:
            classes = sorted(set(labels))
            index = {c: i for i, c in enumerate(classes)}
            encoded = [index[v] for v in labels]
        if len(classes) < 2:
            raise ValueError(f"y has {len(classes)} class(es); a classifier needs at least 2")
        self.classes_ = classes
        # The mesh sees classes 0..K-1 and names them "0".."K-1".
        self._upload_and_train(X, encoded)
        return self

    def _indices(self, answer: Any) -> List[int]:
        return [int(float(p)) for p in answer.predictions]

    def predict(self, X: Any) -> Any:
        """The predicted class of each row (of the labels ``fit`` saw)."""
        answer = self._detailed(X)
        picked = self._indices(answer)
        np = _data.numpy()
        if np is not None and hasattr(self.classes_, "dtype"):
            return self.classes_[np.asarray(picked, dtype=np.int64)]
        return [self.classes_[i] for i in picked]

    def predict_proba(self, X: Any) -> Any:
        """Each row's probability of each class, columns in ``classes_`` order."""
        answer = self._detailed(X)
        k = len(self.classes_)
        # A class absent from the training rows has no column on the mesh.
        where = {int(float(c)): j for j, c in enumerate(answer.classes)}
        rows = [[(p[where[i]] if i in where else 0.0) for i in range(k)] for p in answer.probabilities]
        np = _data.numpy()
        return np.array(rows, dtype=np.float64) if np is not None else rows

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``."""
        predicted = _data.as_list(self.predict(X))
        truth = _data.as_list(y)
        weights = _data.as_list(sample_weight) if sample_weight is not None else [1.0] * len(truth)
        total = sum(weights)
        return float(sum(w for p, t, w in zip(predicted, truth, weights) if p == t) / total) if total else math.nan


class MassRegressor(_SkRegressor, _MassEstimator):  # mixin first, as scikit-learn asks
    """A regressor trained on a Mass mesh (the label standardized for
    training and answered in its units). Arguments as :class:`MassClassifier`.

    Attributes after ``fit``: ``n_features_in_``, ``feature_names_in_``,
    ``model_name_``, ``dataset_``, ``job_id_``, ``metrics_`` (R2, RMSE, MAE
    on the held-out rows).
    """

    _task = "regression"
    _estimator_type = "regressor"

    def fit(self, X: Any, y: Any) -> "MassRegressor":
        """Uploads ``(X, y)`` as a new dataset and trains on the mesh."""
        np = _data.numpy()
        values = np.asarray(_data.as_list(y), dtype=np.float64) if np is not None else [float(v) for v in _data.as_list(y)]
        self._upload_and_train(X, values)
        return self

    def predict(self, X: Any) -> Any:
        """The predicted value of each row."""
        answer = self._detailed(X)
        np = _data.numpy()
        values = [float(p) for p in answer.predictions]
        return np.array(values, dtype=np.float64) if np is not None else values

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """The coefficient of determination R2 of ``predict(X)``."""
        predicted = [float(v) for v in _data.as_list(self.predict(X))]
        truth = [float(v) for v in _data.as_list(y)]
        weights = [float(w) for w in _data.as_list(sample_weight)] if sample_weight is not None else [1.0] * len(truth)
        total = sum(weights)
        mean = sum(w * t for w, t in zip(weights, truth)) / total
        residual = sum(w * (t - p) ** 2 for w, t, p in zip(weights, truth, predicted))
        spread = sum(w * (t - mean) ** 2 for w, t in zip(weights, truth))
        if spread == 0.0:
            return 1.0 if residual == 0.0 else 0.0
        return 1.0 - residual / spread
