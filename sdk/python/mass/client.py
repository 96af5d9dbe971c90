"""The :class:`Client`: typed calls to the HTTP API of any node of a mesh."""

from __future__ import annotations

import os
import pathlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _data, specs
from ._http import Transport
from .errors import MassError
from .jobs import Job, Scoring, Study

PathLike = Union[str, "os.PathLike[str]"]

#: Default bound on one call that moves no bulk data, in seconds.
DEFAULT_TIMEOUT = 30.0
#: Bound on calls that move data or do bulk work (ingest, export, compress, batch).
LONG_TIMEOUT = 600.0
#: Rows per predict request (the API takes at most 10,000 rows and 16 MiB).
PREDICT_BATCH_ROWS = 1000


def _q(name: str) -> str:
    """A name as a URL path segment (model and dataset names are
    letters, digits and ``- _ . : /``)."""
    return urllib.parse.quote(str(name), safe=":/")


@dataclass
class Prediction:
    """The answer of ``POST /v1/models/{name}/predict`` (batches joined).

    Attributes:
        model: the model's name.
        version: the version that answered (the last batch's).
        manifest: that version's manifest id.
        predictions: one class name (classification) or number (regression) per row.
        probabilities: per row, each class's probability in the order of
            ``classes`` (empty for regression).
        classes: the class names.
        served_by: peer ids of the nodes that ran the model.
    """

    model: str
    version: int
    manifest: str
    predictions: List[Any] = field(default_factory=list)
    probabilities: List[List[float]] = field(default_factory=list)
    classes: List[str] = field(default_factory=list)
    served_by: List[str] = field(default_factory=list)


class Client:
    """A client of a Mass mesh, holding one or more node URLs.

    Args:
        nodes: node base URLs, e.g. ``["http://10.0.0.1:8080", "http://10.0.0.2:8080"]``
            (a comma-separated string works too). Default: ``$MASS_NODE``,
            else ``http://127.0.0.1:8080``.
        token: API token sent as ``Authorization: Bearer``. Default:
            ``$MASS_TOKEN`` (none when unset; a loopback node is open).
        ca_cert: PEM file of the CA to trust for ``https://`` nodes.
            Default: ``$MASS_CA_CERT``, else the system's roots.
        timeout: seconds one call may take on one node (bulk calls get
            at least ``LONG_TIMEOUT``).
        retries: extra rounds over the nodes when every node answered
            503/429 (busy), each after the ``Retry-After`` they asked for.
        max_retry_wait: the longest single wait for ``Retry-After``, in seconds.

    A call goes to the node that answered last, and to the next one when
    a node is unreachable, times out or answers 5xx. A 4xx raises at once
    (:class:`~mass.BadRequest` and its kinds, :class:`~mass.Unauthorized`),
    with the node's sentence as the message.
    """

    def __init__(
        self,
        nodes: Union[str, Sequence[str], None] = None,
        *,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        max_retry_wait: float = 10.0,
    ) -> None:
        if nodes is None:
            nodes = os.environ.get("MASS_NODE") or "http://127.0.0.1:8080"
        if token is None:
            token = os.environ.get("MASS_TOKEN") or None
        if ca_cert is None:
            ca_cert = os.environ.get("MASS_CA_CERT") or None
        self._http = Transport(
            nodes,
            token=token,
            ca_cert=os.fspath(ca_cert) if ca_cert is not None else None,
            timeout=timeout,
            retries=retries,
            max_retry_wait=max_retry_wait,
        )
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"mass.Client({[n.base for n in self._http.nodes]!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes kept-alive connections (they reopen on the next call)."""
        self._http.close()

    @property
    def nodes(self) -> List[str]:
        """The node base URLs, in the order given."""
        return [n.base for n in self._http.nodes]

    def _long(self) -> float:
        return max(self.timeout, LONG_TIMEOUT)

    # -- the mesh ------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """``GET /v1/health`` of the first node that answers: ``status``,
        ``peer_id``, ``version``, ``protocol_version``."""
        return self._http.json("GET", "v1/health")

    def peers(self) -> List[Dict[str, Any]]:
        """The peer table: ``peer_id``, ``self``, ``addresses``,
        ``http_addr``, ``state`` (up/down), ``last_seen``, ``hardware``, ``load``."""
        return self._http.json("GET", "v1/peers")

    # -- blobs ---------------------------------------------------------------

    def put_blob(self, data: Union[bytes, PathLike], *, pin: bool = True) -> Dict[str, Any]:
        """Stores bytes (or a file's bytes) as a blob; answers ``{"id", "size"}``
        once durable. Pinned blobs stay until unpinned."""
        query = None if pin else [("pin", "false")]
        if isinstance(data, (bytes, bytearray, memoryview)):
            body: Any = bytes(data)
        else:
            path = os.fspath(data)

            def body() -> Tuple[Any, int]:
                return open(path, "rb"), os.path.getsize(path)

        return self._http.json(
            "PUT",
            "v1/blobs",
            query=query,
            body=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self._long(),
        )

    def get_blob(self, id: str) -> bytes:
        """A blob's bytes (the node verifies them against the id)."""
        return self._http.request("GET", f"v1/blobs/{_q(id)}", timeout=self._long()).body

    # -- datasets ------------------------------------------------------------

    def put_dataset(
        self,
        name: str,
        data: Any,
        label: Optional[str] = None,
        *,
        types: Optional[Mapping[str, str]] = None,
        shard_rows: Optional[int] = None,
        seed: Optional[int] = None,
        validation: Optional[float] = None,
        test: Optional[float] = None,
        test_rows: Optional[Iterable[int]] = None,
        format: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Ingests a dataset (``POST /v1/datasets``) and answers its view:
        ``manifest_id``, ``version``, ``manifest`` (schema, rows, shards,
        statistics, splits).

        Args:
            name: the dataset's name (letters, digits, ``- _ . :``).
            data: a path to a CSV file (plain or gzip), a JSON Lines file
                (one object per row, ``.jsonl`` or ``.ndjson``) or a Parquet
                file (flat columns, ``.parquet`` or ``.pq``); a pandas DataFrame
                (sent as CSV); ``(X, y)`` arrays (sent as two ``.npy``
                files, labels first, columns named ``f0..fN-1``; as CSV when
                numpy is missing or ``y`` is not numeric; ``X`` may be a
                DataFrame); or CSV bytes.
            label: the label column (``"label"`` by default for ``(X, y)``).
            types: column kinds to fix, ``{"zip": "categorical"}``
                (numeric, categorical or text); inferred otherwise.
            shard_rows: rows per shard (the node's default otherwise).
            seed, validation, test: the seeded split: fractions of rows for
                validation (default 0) and test (default 0.2).
            test_rows: 0-based row numbers to hold out as the test split
                instead of a test fraction.
            format: ``csv``, ``jsonl``, ``parquet`` or ``npy`` for a file;
                by default the file's extension decides (``.jsonl``,
                ``.ndjson``: JSON Lines; ``.parquet``, ``.pq``: Parquet), else
                the node reads the bytes (NumPy's or Parquet's magic, or CSV).

        A bad file is refused whole (:class:`~mass.BadRequest`, 422) with
        the row and column named.
        """
        if isinstance(data, (str, os.PathLike)):
            path = os.fspath(data)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no file {path}")
            if not label:
                raise ValueError("label: name the label column")

            def body() -> Tuple[Any, int]:
                return open(path, "rb"), os.path.getsize(path)

            upload: Any = body
            if format is None and path.lower().endswith((".jsonl", ".ndjson")):
                format = "jsonl"
            elif format is None and path.lower().endswith((".parquet", ".pq")):
                format = "parquet"
        else:
            upload, label = _data.dataset_body(data, label)
        query: List[Tuple[str, Any]] = [("name", name), ("label", label)]
        if format is not None:
            query.append(("format", format))
        if types:
            query.append(("types", ",".join(f"{c}:{k}" for c, k in types.items())))
        for key, value in (("shard_rows", shard_rows), ("seed", seed), ("validation", validation), ("test", test)):
            if value is not None:
                query.append((key, value))
        if test_rows is not None:
            listing = "".join(f"{int(r)}\n" for r in test_rows).encode()
            query.append(("test_rows", self.put_blob(listing)["id"]))
        return self._http.json(
            "POST",
            "v1/datasets",
            query=query,
            body=upload,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self._long(),
        )

    def datasets(self) -> List[Dict[str, Any]]:
        """Every dataset: ``name``, ``manifest``, ``version``, ``rows``,
        ``columns``, ``shards``."""
        return self._http.json("GET", "v1/datasets")

    def dataset(self, name: str) -> Dict[str, Any]:
        """One dataset's manifest and the peers holding each shard
        (``shard_holders``)."""
        return self._http.json("GET", f"v1/datasets/{_q(name)}")

    def fit_pipeline(self, dataset: str, name: str, spec: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Fits a feature pipeline (a ``PipelineSpec`` dict, e.g.
        ``{"impute": "median", "scale": "standard"}``) where the shards live."""
        return self._http.json(
            "POST",
            f"v1/datasets/{_q(dataset)}/pipelines",
            json_body={"name": name, "spec": dict(spec or {})},
            timeout=self._long(),
        )

    # -- jobs ----------------------------------------------------------------

    def train(
        self,
        dataset: str,
        model: str,
        learner: Union[str, Mapping[str, Any]] = "mlp:128",
        **options: Any,
    ) -> Job:
        """Submits a training job and returns its :class:`Job` handle at
        once (the job runs on the mesh; ``.wait()`` follows it).

        Args:
            dataset: the dataset to train on (its training rows; scored on its test rows).
            model: the name the model is registered under (``model/<model>``;
                a new version when the name exists).
            learner: ``linear``, ``mlp:W1,W2,...`` or ``gbdt``.
            **options: ``task``, ``ensemble`` (``bagging:8``, ...), ``epochs``,
                ``batch_size``, ``learning_rate``, ``l2``, ``loss``,
                ``patience``, ``seed``, ``placement``, ``pipeline``, ``scale``,
                ``cross``, ``pca``, ``bins``, tree settings: see
                :func:`mass.specs.job_spec`.

        A job the mesh cannot run is refused before it starts
        (:class:`~mass.BadRequest`, with the reason). The same spec is the
        same job: submitting it again answers the same id.
        """
        body = specs.job_spec(dataset, model, learner, **options)
        answer = self._http.json("POST", "v1/jobs", json_body=body)
        return Job(self, answer["id"])

    def job(self, id: str) -> Job:
        """A handle on an existing job."""
        return Job(self, id)

    def jobs(self) -> List[Dict[str, Any]]:
        """Every job's record."""
        return self._http.json("GET", "v1/jobs")

    # -- studies -------------------------------------------------------------

    def study(
        self,
        name: str,
        dataset: str,
        space: Mapping[str, Any],
        *,
        strategy: Union[str, Mapping[str, Any]] = "tpe",
        trials: int = 20,
        parallel: int = 2,
        metric: Optional[str] = None,
        asha: Union[None, str, Tuple[int, int]] = None,
        grid_steps: int = 4,
        startup: Optional[int] = None,
        population: int = 8,
        mutation: float = 0.2,
        learner: Union[str, Mapping[str, Any]] = "mlp:128",
        **options: Any,
    ) -> Study:
        """Opens a hyperparameter study (``POST /v1/studies``) and returns its
        :class:`Study` handle; the mesh drives it, and registers the winner
        as ``model/<name>``.

        Args:
            space: parameter -> a list of choices, or ``{"uniform": [lo, hi]}``,
                ``{"log_uniform": [..]}``, ``{"int": [..]}``, ``{"log_int": [..]}``.
                Parameters: model, ensemble, learning_rate, epochs,
                batch_size, l2, trees, leaves, max_depth, min_rows,
                tree_learning_rate, row_fraction, feature_fraction, scale.
            strategy: grid, random, tpe or genetic.
            trials, parallel: the budget, and trials at once.
            metric: accuracy, macro_f1, log_loss, r2, rmse or mae (accuracy
                or r2 by the task when omitted).
            asha: successive halving, ``"MIN:ETA"``.
            learner, **options: the base job every trial starts from (as
                :meth:`train`).

        The dataset needs validation rows (ingest with ``validation=0.2``).
        """
        seed = options.get("seed") or 0
        body = {
            "name": name,
            "base": specs.job_spec(dataset, name, learner, **options),
            "space": specs.space_json(space),
            "strategy": specs.strategy_json(
                strategy,
                trials=trials,
                grid_steps=grid_steps,
                startup=startup,
                population=population,
                mutation=mutation,
            ),
            "trials": int(trials),
            "parallel": int(parallel),
            "seed": int(seed),
        }
        if asha is not None:
            body["asha"] = specs.asha_json(asha)
        if metric is not None:
            body["metric"] = specs.metric_json(metric)
        answer = self._http.json("POST", "v1/studies", json_body=body)
        return Study(self, answer["id"])

    def get_study(self, id: str) -> Study:
        """A handle on an existing study."""
        return Study(self, id)

    def studies(self) -> List[Dict[str, Any]]:
        """Every study's journal."""
        return self._http.json("GET", "v1/studies")

    # -- models --------------------------------------------------------------

    def models(self) -> List[Dict[str, Any]]:
        """Every model: ``name``, ``version`` (served now), ``manifest``,
        ``versions`` (how many), ``accuracy`` or ``r2``."""
        return self._http.json("GET", "v1/models")

    def model(self, name: str) -> Dict[str, Any]:
        """One model: ``name``, ``version`` served now, ``manifest_id``,
        ``manifest`` (spec, classes, evaluation, lineage, compression),
        ``versions`` and ``replicas``."""
        return self._http.json("GET", f"v1/models/{_q(name)}")

    def versions(self, name: str) -> List[Dict[str, Any]]:
        """A model's versions: ``version``, ``manifest``, ``published_at`` (Unix ms)."""
        return self.model(name)["versions"]

    def model_version(self, name: str, manifest: str) -> Dict[str, Any]:
        """The manifest of any stored version of a model, by manifest id."""
        return self._http.json("GET", f"v1/models/{_q(name)}/versions/{_q(manifest)}")

    def promote(self, name: str, version: int) -> Dict[str, Any]:
        """Serves ``version`` of the model from now on, on every node;
        answers that version (``version``, ``manifest``, ``published_at``)."""
        return self._http.json("POST", f"v1/models/{_q(name)}/promote", json_body={"version": int(version)})

    def rollback(self, name: str) -> Dict[str, Any]:
        """Serves the version before the current one; answers it. A
        :class:`~mass.Conflict` at version 1."""
        return self._http.json("POST", f"v1/models/{_q(name)}/rollback", idempotent=False)

    def compress(
        self,
        name: str,
        *,
        quantize: Optional[str] = None,
        prune: Optional[float] = None,
        fine_tune_epochs: Optional[int] = None,
        distill: Optional[str] = None,
        version: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Compresses a model into a new version, served from then on: one
        of ``quantize="int8"``, ``prune=0.8`` (with ``fine_tune_epochs``)
        or ``distill="mlp:64"``; ``version`` compresses another than the
        current one. Answers the new version."""
        body: Dict[str, Any] = {}
        for key, value in (
            ("quantize", quantize),
            ("prune", prune),
            ("fine_tune_epochs", fine_tune_epochs),
            ("distill", distill),
            ("version", version),
        ):
            if value is not None:
                body[key] = value
        return self._http.json("POST", f"v1/models/{_q(name)}/compress", json_body=body, timeout=self._long())

    def export_bytes(self, name: str, format: str = "safetensors", *, version: Optional[int] = None) -> Tuple[bytes, int]:
        """A model as a file's bytes (``safetensors`` or ``onnx``) and the
        version exported."""
        query: List[Tuple[str, Any]] = [("format", format)]
        if version is not None:
            query.append(("version", int(version)))
        response = self._http.request("GET", f"v1/models/{_q(name)}/export", query=query, timeout=self._long())
        return response.body, int(response.headers.get("x-mass-model-version", "0"))

    def export(self, name: str, format: str, path: PathLike, *, version: Optional[int] = None) -> int:
        """Writes a model to ``path`` as ``safetensors`` (weights; pipeline and
        classes as metadata) or ``onnx`` (the whole model); answers the
        version written."""
        data, written = self.export_bytes(name, format, version=version)
        target = pathlib.Path(path)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        return written

    def import_model(
        self,
        name: str,
        data: Union[bytes, PathLike],
        dataset: str,
        *,
        pipeline: Optional[Mapping[str, Any]] = None,
        activation: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Registers a safetensors file as a new version of ``name``, reading
        ``dataset``'s columns. ``pipeline``: ``{"spec": {...}}`` or
        ``{"fitted": {...}}`` (default: the file's metadata)."""
        blob = self.put_blob(data, pin=False)
        body: Dict[str, Any] = {"blob": blob["id"], "dataset": dataset}
        if pipeline is not None:
            body["pipeline"] = dict(pipeline)
        if activation is not None:
            body["activation"] = activation
        return self._http.json("POST", f"v1/models/{_q(name)}/import", json_body=body, timeout=self._long())

    def batch_predict(self, name: str, dataset: str, *, into: Optional[str] = None) -> Dict[str, Any]:
        """Predicts every row of a stored dataset where its shards live: a CSV
        blob (``row,split,label,prediction``) and the test metrics; with
        ``into``, the rows and outputs as a new dataset."""
        body: Dict[str, Any] = {"dataset": dataset}
        if into is not None:
            body["into"] = into
        return self._http.json("POST", f"v1/models/{_q(name)}/batch", json_body=body, timeout=self._long())

    def score(self, name: str, dataset: str, *, into: Optional[str] = None) -> Scoring:
        """As :meth:`batch_predict`, but returns a :class:`Scoring` handle at
        once: the batch prediction runs as a job on the mesh (``.wait()``
        follows it, with a bar of shards), and survives the node driving it."""
        body: Dict[str, Any] = {"dataset": dataset, "wait": False}
        if into is not None:
            body["into"] = into
        answer = self._http.json("POST", f"v1/models/{_q(name)}/batch", json_body=body)
        return Scoring(self, answer["scoring"])

    def scoring(self, id: str) -> Scoring:
        """A handle on an existing scoring job."""
        return Scoring(self, id)

    def compose(
        self,
        name: str,
        *,
        serial: Optional[Sequence[str]] = None,
        parallel: Optional[Sequence[Union[str, Tuple[str, float]]]] = None,
    ) -> Dict[str, Any]:
        """A model made of registered models, as a new version of ``name``:
        ``serial=["reduce", "classify"]`` or ``parallel=[("a", 0.5), "b"]``."""
        if (serial is None) == (parallel is None):
            raise ValueError("give exactly one of serial or parallel")
        if serial is not None:
            body: Dict[str, Any] = {"serial": list(serial)}
        else:
            parts: List[Dict[str, Any]] = []
            for part in parallel or []:
                if isinstance(part, str):
                    parts.append({"model": part})
                else:
                    model, weight = part
                    parts.append({"model": model, "weight": float(weight)})
            body = {"parallel": parts}
        return self._http.json("POST", f"v1/models/{_q(name)}/compose", json_body=body, timeout=self._long())

    # -- predictions ---------------------------------------------------------

    def predict_detailed(
        self,
        model: str,
        X: Any,
        *,
        allow_missing: bool = False,
        batch_rows: int = PREDICT_BATCH_ROWS,
    ) -> Prediction:
        """The full answer for rows ``X`` (see :meth:`predict` for the
        forms ``X`` may take), sent ``batch_rows`` rows per request."""
        batch_rows = max(1, int(batch_rows))
        binary = _data.numeric_matrix(X)
        rows: Any = binary if binary is not None else _data.to_rows(X)
        if len(rows) == 0:
            raise ValueError("X: no rows to predict")
        result: Optional[Prediction] = None
        for start in range(0, len(rows), batch_rows):
            if binary is not None:
                # Numeric arrays travel as .npy: no JSON to write or parse.
                answer = self._http.request(
                    "POST",
                    f"v1/models/{_q(model)}/predict",
                    query=[("allow_missing", "true" if allow_missing else "false")],
                    body=_data.npy_bytes(binary[start : start + batch_rows]),
                    headers={"Content-Type": "application/x-npy"},
                ).json()
            else:
                answer = self._http.json(
                    "POST",
                    f"v1/models/{_q(model)}/predict",
                    json_body={"rows": rows[start : start + batch_rows], "allow_missing": bool(allow_missing)},
                )
            if result is None:
                result = Prediction(
                    model=answer["model"],
                    version=answer["version"],
                    manifest=answer["manifest"],
                    classes=list(answer.get("classes") or []),
                )
            result.version, result.manifest = answer["version"], answer["manifest"]
            result.predictions.extend(answer["predictions"])
            result.probabilities.extend(answer.get("probabilities") or [])
            if answer.get("served_by") and answer["served_by"] not in result.served_by:
                result.served_by.append(answer["served_by"])
        assert result is not None
        return result

    def predict(self, model: str, X: Any, *, allow_missing: bool = False, batch_rows: int = PREDICT_BATCH_ROWS) -> Any:
        """Predicts rows with the version of ``model`` served now.

        ``X`` is a 2-D numpy array or a list of rows (values of the feature
        columns in the dataset's order, label left out), a pandas
        DataFrame (columns matched by name, in any order), a list of dicts,
        or one row (a 1-D array or flat list). Missing values (None, NaN)
        are refused unless ``allow_missing`` (then the pipeline imputes).

        Returns a numpy array (a list without numpy): class names
        (strings, as the mesh names the label's values) for a classifier,
        numbers for a regressor.
        """
        answer = self.predict_detailed(model, X, allow_missing=allow_missing, batch_rows=batch_rows)
        np = _data.numpy()
        if np is None:
            return list(answer.predictions)
        if answer.probabilities or any(isinstance(p, str) for p in answer.predictions):
            return np.array([str(p) for p in answer.predictions])
        return np.array(answer.predictions, dtype=np.float64)

    def predict_proba(
        self, model: str, X: Any, *, allow_missing: bool = False, batch_rows: int = PREDICT_BATCH_ROWS
    ) -> Any:
        """Each row's probability of each class, columns in the order of
        :meth:`classes` (a numpy array of shape (rows, classes); lists
        without numpy). A regressor has none: :class:`~mass.MassError`."""
        answer = self.predict_detailed(model, X, allow_missing=allow_missing, batch_rows=batch_rows)
        if not answer.classes:
            raise MassError(f"model '{model}' is a regressor: it answers numbers, not class probabilities")
        np = _data.numpy()
        if np is None:
            return [list(row) for row in answer.probabilities]
        return np.array(answer.probabilities, dtype=np.float64)

    def classes(self, model: str) -> List[str]:
        """The class names of the version served now, in the order of
        :meth:`predict_proba`'s columns (empty for a regressor)."""
        return list(self.model(model)["manifest"].get("classes") or [])
