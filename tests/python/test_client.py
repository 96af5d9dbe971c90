"""The Python client (sdk/python) against a live three-node mesh.

Run: MASS_BIN=target/debug/mass PYTHONPATH=sdk/python python -m pytest -q tests/python/test_client.py
(the e2e test `python_client` does so with the venv of scripts/python-env.sh).

The first tests check the transport against small fake servers (no mesh):
failover, Retry-After, kept-alive connections, typed errors. The others
share one mesh started by the `mesh` fixture (conftest.py): ingest a
DataFrame, train, wait, predict from arrays and DataFrames, promote and
roll back, the scikit-learn-style estimators on data made here, refusals
by name, a study, compression and export, tokens (on a lone node of its
own), and failover when the first node is killed (last, as it leaves two
nodes). Data is small and epochs few: the file takes about 15 s on two
cores with debug binaries, well under the 90 s it is allowed.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pandas as pd
import pytest

import mass
from conftest import eventually

SPECIES = np.array(["setosa", "versicolor", "virginica"])
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def blobs(n: int = 300, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Iris-like data: three Gaussian blobs in four dimensions, unit spread,
    centres 5.7 to 6.9 apart (a Bayes accuracy near 1)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 3.0, 1.5, 0.2], [9.0, 3.0, 5.5, 0.2], [5.0, 7.0, 5.5, 4.2]])
    y = np.arange(n) % 3
    rng.shuffle(y)
    X = centres[y] + rng.normal(size=(n, 4))
    return X, y


def frame(X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(X, columns=FEATURES)
    df["species"] = SPECIES[y]
    return df


# -- the transport, against fake nodes ----------------------------------------


class FakeNode:
    """An HTTP server answering from a script: each request takes the next
    (status, JSON body, headers), the last one repeating."""

    def __init__(self, script: List[Tuple[int, Any, Dict[str, str]]], hang_up: bool = False) -> None:
        self.script = list(script)
        # Close each connection after answering without saying so, as a
        # node does with a kept-alive connection left idle too long.
        self.hang_up = hang_up
        self.requests: List[Dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, headers = fake.script[0] if len(fake.script) == 1 else fake.script.pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                if fake.hang_up:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Handler threads block on kept-alive connections: do not wait for them.
        self.server.daemon_threads = True
        self.server.block_on_close = False  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fakes():
    made: List[FakeNode] = []

    def make(*script: Tuple[int, Any, Dict[str, str]], hang_up: bool = False) -> FakeNode:
        node = FakeNode(list(script), hang_up=hang_up)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def closed_port_url() -> str:
    """A URL nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


HEALTH = {"status": "ok", "peer_id": "12D3KooWfake", "version": "0", "protocol_version": 1}


def test_fails_over_past_refused_and_5xx_nodes_and_keeps_the_one_that_answered(fakes: Callable[..., FakeNode]) -> None:
    broken = fakes((500, {"error": "disk on fire"}, {}))
    good = fakes((200, HEALTH, {}))
    client = mass.Client([closed_port_url(), broken.url, good.url], timeout=5)
    assert client.health()["status"] == "ok"
    assert len(broken.requests) == 1 and len(good.requests) == 1
    # The next call starts at the node that answered.
    client.health()
    assert len(broken.requests) == 1 and len(good.requests) == 2

    dead = mass.Client([closed_port_url(), broken.url], timeout=5)
    with pytest.raises(mass.NoNodeAnswered) as e:
        dead.health()
    assert "connection refused" in str(e.value) and "500 disk on fire" in str(e.value), str(e.value)


def test_a_connection_the_node_closed_while_idle_is_replaced(fakes: Callable[..., FakeNode]) -> None:
    node = fakes((200, HEALTH, {}), hang_up=True)
    client = mass.Client([node.url], timeout=5, retries=0)
    for _ in range(3):
        assert client.health()["status"] == "ok"
    assert len(node.requests) == 3
    # Not idempotent, yet sent again: the node had closed the connection unread.
    assert client.rollback("m")["status"] == "ok"


def test_busy_nodes_are_retried_after_their_retry_after(fakes: Callable[..., FakeNode]) -> None:
    busy = fakes((503, {"error": "inference queue full"}, {"Retry-After": "1"}), (200, HEALTH, {}))
    client = mass.Client([busy.url], timeout=5, retries=2)
    start = time.monotonic()
    assert client.health()["peer_id"] == "12D3KooWfake"
    waited = time.monotonic() - start
    assert 0.9 <= waited < 5, waited
    assert len(busy.requests) == 2

    always_busy = fakes((429, {"error": "slow down"}, {"Retry-After": "0"}))
    client = mass.Client([always_busy.url], timeout=5, retries=2)
    with pytest.raises(mass.NoNodeAnswered) as e:
        client.health()
    assert len(always_busy.requests) == 3 and "429 slow down" in str(e.value)


def test_4xx_answers_raise_typed_errors_with_the_nodes_text_without_trying_others(
    fakes: Callable[..., FakeNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASS_TOKEN", "s3cret")
    first = fakes(
        (401, {"error": "the API token is not known to this node"}, {}),
        (403, {"error": "token 'app' has the predict role; POST /v1/jobs needs write"}, {}),
        (422, {"error": "label 'y' has 1 class(es); a classifier needs at least 2"}, {}),
        (404, {"error": "no model named 'nope'"}, {}),
        (409, {"error": "model 'm' is at version 1; there is nothing to roll back to"}, {}),
    )
    second = fakes((200, HEALTH, {}))
    client = mass.Client([first.url, second.url], timeout=5)
    with pytest.raises(mass.Unauthorized, match="not known to this node"):
        client.models()
    assert first.requests[0]["headers"]["Authorization"] == "Bearer s3cret"
    with pytest.raises(mass.Unauthorized, match="needs write"):
        client.jobs()
    with pytest.raises(mass.BadRequest, match="needs at least 2") as e:
        client.train(dataset="d", model="m", learner="linear")
    assert e.value.status == 422
    with pytest.raises(mass.NotFound, match="no model named 'nope'"):
        client.model("nope")
    with pytest.raises(mass.Conflict, match="nothing to roll back to"):
        client.rollback("m")
    assert second.requests == [], "a 4xx went on to another node"
    # What was sent is the API's job spec.
    spec = json.loads(first.requests[2]["body"])
    assert spec == {
        "model": "m",
        "dataset": "d",
        "pipeline": {},
        "spec": {"learner": "linear"},
        "ensemble": "single",
        "seed": 0,
    }


def test_job_specs_are_written_as_the_api_reads_them() -> None:
    spec = mass.job_spec(
        "d", "m", "mlp:64,32", ensemble="bagging:4", epochs=5, loss="huber:0.5", task="regression", scale="min-max"
    )
    assert spec["spec"] == {"learner": {"mlp": {"hidden": [64, 32]}}, "epochs": 5, "loss": {"huber": {"delta": 0.5}}}
    assert spec["ensemble"] == {"bagging": {"members": 4}} and spec["task"] == "regression"
    assert spec["pipeline"] == {"scale": "min_max"}
    trees = mass.job_spec("d", "m", "gbdt", trees=7, leaves=4, learning_rate=0.3)
    assert trees["spec"]["learner"] == {"gbdt": {"trees": 7, "leaves": 4, "learning_rate": 0.3}}
    assert mass.job_spec("d", "m", ensemble="data-parallel:3:4")["ensemble"] == {
        "data_parallel": {"workers": 3, "rounds": 4}
    }
    with pytest.raises(ValueError, match="expected linear, mlp"):
        mass.job_spec("d", "m", "svm")
    with pytest.raises(TypeError, match="unknown job option"):
        mass.job_spec("d", "m", epoch=3)


# -- a live mesh --------------------------------------------------------------


@pytest.fixture(scope="module")
def client(mesh) -> mass.Client:
    """A client given every node, the first one first."""
    return mass.Client(mesh.urls, timeout=60)


@pytest.fixture(scope="module")
def iris(client: mass.Client) -> Dict[str, Any]:
    """Iris-like blobs ingested from a DataFrame, and an MLP trained on them
    (version 1 of model/blobs)."""
    X, y = blobs()
    view = client.put_dataset("blobs", frame(X, y), label="species", shard_rows=100, seed=7)
    job = client.train(dataset="blobs", model="blobs", learner="mlp:16", epochs=30, learning_rate=0.01, seed=1)
    record = job.wait(timeout=120, progress=True)
    return {"X": X, "y": y, "view": view, "job": job, "record": record}


def test_a_dataframe_is_ingested_trained_on_and_predicted_from_arrays_and_frames(
    client: mass.Client, iris: Dict[str, Any]
) -> None:
    view = iris["view"]
    manifest = view["manifest"]
    assert manifest["rows"] == 300 and len(manifest["shards"]) == 3
    assert [c["name"] for c in manifest["schema"]["columns"]] == FEATURES + ["species"]
    assert manifest["schema"]["columns"][4]["kind"] == "categorical"
    assert any(d["name"] == "blobs" and d["rows"] == 300 for d in client.datasets())
    assert len(client.dataset("blobs")["shard_holders"]) == 3

    job, record = iris["job"], iris["record"]
    assert record["state"] == "completed" and job.status() == "completed"
    assert isinstance(job.progress(), list)
    assert job.model == "blobs"
    assert job.metrics["accuracy"] > 0.9, job.metrics
    assert client.job(job.id).record()["id"] == job.id
    assert any(r["id"] == job.id for r in client.jobs())

    X, y = iris["X"], iris["y"]
    from_arrays = client.predict("blobs", X)
    assert from_arrays.shape == (300,) and from_arrays.dtype.kind == "U"
    accuracy = float(np.mean(from_arrays == SPECIES[y]))
    assert accuracy > 0.9, accuracy
    # Columns by name, in any order; the label column may come along.
    shuffled = frame(X, y)[["petal_width", "species", "sepal_length", "petal_length", "sepal_width"]]
    assert (client.predict("blobs", shuffled) == from_arrays).all()
    assert (client.predict("blobs", X.tolist()) == from_arrays).all()
    one = client.predict("blobs", X[0])
    assert one.shape == (1,) and one[0] == from_arrays[0]

    proba = client.predict_proba("blobs", X[:20])
    assert proba.shape == (20, 3)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    classes = client.classes("blobs")
    assert sorted(classes) == list(SPECIES)
    assert (np.array(classes)[proba.argmax(axis=1)] == from_arrays[:20]).all()

    detailed = client.predict_detailed("blobs", np.repeat(X, 9, axis=0)[:2500], batch_rows=1000)
    assert len(detailed.predictions) == 2500 and detailed.version == 1


def test_a_batch_prediction_runs_as_a_job_followed_to_its_csv(client: mass.Client, iris: Dict[str, Any]) -> None:
    scoring = client.score("blobs", "blobs")
    record = scoring.wait(timeout=120, progress=True)
    assert record["state"] == "completed" and len(record["shards"]) == 3, record
    assert all(part is not None for part in record["shards"]) and record["drivers"]
    result = scoring.result
    assert result["rows"] == 300 and result["version"] == 1 and len(result["shard_peers"]) == 3
    lines = client.get_blob(result["blob"]).decode().splitlines()
    assert lines[0] == "row,split,label,prediction" and len(lines) == 301
    # The blocking call runs the same job and writes the same blob.
    assert client.batch_predict("blobs", "blobs")["blob"] == result["blob"]
    assert client.scoring(scoring.id).record()["result"] == result
    with pytest.raises(mass.NotFound, match="nope"):
        client.score("blobs", "nope")
    with pytest.raises(mass.MassError, match="cannot be cancelled"):
        scoring.cancel()


def test_a_json_lines_file_is_ingested_by_its_extension(client: mass.Client, tmp_path: Any) -> None:
    X, y = blobs(60, seed=5)
    path = tmp_path / "blobs.jsonl"
    with open(path, "w") as out:
        for row, label in zip(X, y):
            out.write(json.dumps({**dict(zip(FEATURES, map(float, row))), "species": str(SPECIES[label])}) + "\n")
    view = client.put_dataset("blobs-jsonl", path, label="species", seed=2)
    manifest = view["manifest"]
    assert manifest["rows"] == 60
    names = [c["name"] for c in manifest["schema"]["columns"]]
    assert names == FEATURES + ["species"], names
    # The same bytes named as CSV are refused by name, not read as JSON.
    with pytest.raises(mass.BadRequest):
        client.put_dataset("blobs-jsonl-as-csv", path, label="species", format="csv")


def test_a_parquet_name_is_read_as_parquet(client: mass.Client, tmp_path: Any) -> None:
    # No Parquet writer in the standard library: a CSV named .parquet shows
    # that the name chose the format, since the node refuses it as Parquet.
    path = tmp_path / "blobs.parquet"
    path.write_text("a,species\n1,x\n2,y\n")
    with pytest.raises(mass.BadRequest, match="not a Parquet file"):
        client.put_dataset("blobs-parquet", path, label="species")
    assert client.put_dataset("blobs-parquet", path, label="species", format="csv")["manifest"]["rows"] == 2


def test_versions_are_promoted_and_rolled_back(client: mass.Client, iris: Dict[str, Any]) -> None:
    # Another spec trains version 2 of the same name (the same spec would be the same job).
    client.train(dataset="blobs", model="blobs", learner="linear").wait(timeout=120, progress=False)
    view = client.model("blobs")
    assert view["version"] == 2 and [v["version"] for v in client.versions("blobs")] == [1, 2]
    assert view["manifest"]["spec"]["spec"]["learner"] == "linear"
    summary = next(m for m in client.models() if m["name"] == "blobs")
    assert summary["version"] == 2 and summary["versions"] == 2 and summary["accuracy"] > 0.9

    X = iris["X"][:5]
    assert client.predict_detailed("blobs", X).version == 2
    back = client.rollback("blobs")
    assert back["version"] == 1
    assert client.model("blobs")["version"] == 1
    eventually("predictions come from version 1", lambda: client.predict_detailed("blobs", X).version == 1, 20)
    with pytest.raises(mass.Conflict, match="nothing to roll back to"):
        client.rollback("blobs")

    assert client.promote("blobs", 2)["version"] == 2
    eventually("predictions come from version 2", lambda: client.predict_detailed("blobs", X).version == 2, 20)
    with pytest.raises(mass.NotFound, match=r"model 'blobs' has no version 7 \(versions 1 to 2\)"):
        client.promote("blobs", 7)
    assert client.promote("blobs", 1)["version"] == 1


def test_the_estimators_fit_predict_and_score_like_scikit_learn(mesh, iris: Dict[str, Any]) -> None:
    X, y = blobs(300, seed=11)
    labels = SPECIES[y]
    train, test = slice(0, 240), slice(240, 300)
    clf = mass.MassClassifier(
        nodes=mesh.urls, model="mlp:16", epochs=40, learning_rate=0.02, batch_size=32, seed=3, scale="standard"
    )
    assert clf.get_params()["model"] == "mlp:16" and clf.get_params()["scale"] == "standard"
    assert clf.set_params(epochs=30) is clf and clf.epochs == 30
    with pytest.raises(ValueError, match="invalid parameter 'epoch'"):
        clf.set_params(epoch=3)
    with pytest.raises(mass.NotFittedError):
        clf.predict(X[:1])
    assert clf.fit(X[train], labels[train]) is clf
    assert list(clf.classes_) == list(SPECIES) and clf.n_features_in_ == 4
    predicted = clf.predict(X[test])
    assert predicted.shape == (60,) and set(predicted) <= set(SPECIES)
    accuracy = clf.score(X[test], labels[test])
    assert accuracy > 0.9, accuracy
    proba = clf.predict_proba(X[test])
    assert proba.shape == (60, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert (clf.classes_[proba.argmax(axis=1)] == predicted).all()
    assert clf.metrics_["accuracy"] > 0.8 and clf.model_name_ in {m["name"] for m in mass.Client(mesh.urls).models()}

    # Fitted on a DataFrame: columns by name at predict time.
    frame_X = pd.DataFrame(X, columns=FEATURES)
    by_name = mass.MassClassifier(nodes=mesh.urls, model="linear", seed=3).fit(frame_X[train], y[train])
    assert list(by_name.feature_names_in_) == FEATURES
    assert by_name.score(frame_X[test][FEATURES[::-1]], y[test]) > 0.9
    assert by_name.predict(frame_X[test]).dtype.kind == "i"

    # A regressor: R2 on a noisy linear target.
    rng = np.random.default_rng(5)
    target = X @ np.array([1.5, -2.0, 0.5, 1.0]) + rng.normal(scale=0.3, size=len(X))
    reg = mass.MassRegressor(nodes=mesh.urls, model="linear", seed=3).fit(X[train], target[train])
    r2 = reg.score(X[test], target[test])
    assert r2 > 0.9, r2
    assert reg.predict(X[test]).dtype == np.float64 and reg.metrics_["r2"] > 0.9

    try:
        from sklearn.base import clone
    except ImportError:
        return
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and not hasattr(copy, "model_name_")


def test_refusals_are_typed_and_name_what_is_wrong(client: mass.Client, iris: Dict[str, Any]) -> None:
    with pytest.raises(mass.NotFound, match="no model named 'no-such-model'") as e:
        client.predict("no-such-model", iris["X"][:1])
    assert isinstance(e.value, mass.BadRequest) and e.value.status == 404
    with pytest.raises(mass.NotFound, match="no model named 'no-such-model'"):
        client.model("no-such-model")
    with pytest.raises(mass.NotFound, match="no dataset named 'nowhere'"):
        client.dataset("nowhere")

    with pytest.raises(mass.BadRequest, match=r"rows\[0\]: 3 values, but the model reads 4 columns") as e:
        client.predict("blobs", [[1.0, 2.0, 3.0]])
    assert e.value.status == 400
    with pytest.raises(mass.BadRequest, match=r"rows\[1\]\.petal_length: expected a number, got the text \"tall\""):
        client.predict("blobs", [{f: 1.0 for f in FEATURES}, {**{f: 1.0 for f in FEATURES}, "petal_length": "tall"}])
    with pytest.raises(mass.BadRequest, match="allow_missing"):
        client.predict("blobs", [[1.0, float("nan"), 3.0, 4.0]])
    assert client.predict("blobs", [[1.0, float("nan"), 3.0, 4.0]], allow_missing=True).shape == (1,)
    with pytest.raises(mass.BadRequest, match="no dataset named 'nowhere'") as e:
        client.train(dataset="nowhere", model="m", learner="linear")
    assert e.value.status == 422
    with pytest.raises(mass.BadRequest, match="no column named 'label'"):
        client.put_dataset("broken", b"a,b\n1,2\n", label="label")
    regressor = _regressor(client)
    assert client.predict(regressor, [[3.0, 1.5, 0.2]]).dtype == np.float64
    with pytest.raises(mass.MassError, match="'numbers' is a regressor"):
        client.predict_proba(regressor, [[3.0, 1.5, 0.2]])

    # A wait that runs out says so near its deadline, though each read
    # waits on the node for the job's next change; a cancelled job ends
    # the wait with JobFailed.
    # Long enough to be caught running: no early stop (patience = epochs);
    # 300 epochs with the default patience ended within 0.3 s.
    job = client.train(dataset="blobs", model="blobs-long", learner="mlp:64", epochs=3000, patience=3000, seed=9)
    asked = time.monotonic()
    with pytest.raises(mass.WaitTimeout, match="is still"):
        job.wait(timeout=0.3, progress=False)
    assert time.monotonic() - asked < 6, "the wait overran its timeout"
    assert mass.jobs.state_of(job.cancel()["state"])[0] == "cancelled"
    with pytest.raises(mass.JobFailed, match="was cancelled") as e:
        job.wait(timeout=60, progress=False)
    assert e.value.state == "cancelled" and e.value.id == job.id
    with pytest.raises(mass.Conflict, match="already"):
        job.cancel()


def _regressor(client: mass.Client) -> str:
    """A regressor on the blobs' numbers (arrays sent as .npy)."""
    X, y = blobs(120, seed=2)
    client.put_dataset("numbers", (X[:, 1:], X[:, 0]), label="target", test=0.25)
    client.train(dataset="numbers", model="numbers", learner="linear", task="regression").wait(timeout=120, progress=False)
    view = client.dataset("numbers")
    assert [c["name"] for c in view["manifest"]["schema"]["columns"]] == ["f0", "f1", "f2", "target"]
    return "numbers"


def test_studies_compression_and_export(client: mass.Client, iris: Dict[str, Any], tmp_path: Any) -> None:
    X, y = iris["X"], iris["y"]
    with pytest.raises(mass.BadRequest, match="dataset 'blobs' has no validation rows"):
        client.study("no-validation", dataset="blobs", space={"model": ["linear"]}, trials=1, parallel=1)
    client.put_dataset("blobs-val", frame(X, y), label="species", validation=0.2, seed=3)
    with pytest.raises(mass.BadRequest, match="space.depth: unknown parameter"):
        client.study("bad-space", dataset="blobs-val", space={"depth": [1, 2]}, trials=2)

    study = client.study(
        "blobs-best",
        dataset="blobs-val",
        space={"model": ["linear", "mlp:8"], "learning_rate": {"log_uniform": [0.001, 0.05]}},
        strategy="random",
        trials=2,
        parallel=2,
        epochs=10,
        seed=5,
    )
    record = study.wait(timeout=120, progress=False)
    assert record["state"] == "completed" and len(record["trials"]) == 2
    assert study.best is not None and study.best["params"]["model"]["text"] in ("linear", "mlp:8")
    assert study.metrics["accuracy"] > 0.9
    assert any(s["id"] == study.id for s in client.studies())
    assert client.get_study(study.id).status() == "completed"
    assert client.model("blobs-best")["manifest"]["study"] == study.id

    compressed = client.compress("blobs-best", quantize="int8")
    assert compressed["version"] == 2
    view = client.model("blobs-best")
    assert view["version"] == 2 and view["manifest"]["compression"]["method"] == "int8"
    assert np.mean(client.predict("blobs-best", X) == SPECIES[y]) > 0.9
    with pytest.raises(mass.BadRequest, match="int8-quantized") as e:
        client.export("blobs-best", "onnx", tmp_path / "int8.onnx")
    assert e.value.status == 422 and not (tmp_path / "int8.onnx").exists()
    path = tmp_path / "blobs-best.safetensors"
    assert client.export("blobs-best", "safetensors", path, version=1) == 1
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert json.loads(data[8 : 8 + header])["__metadata__"]["format"] == "mass.mlp/1"


def test_tokens_are_sent_and_weak_or_missing_ones_are_unauthorized(
    secured_node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, token = secured_node
    monkeypatch.delenv("MASS_TOKEN", raising=False)
    anonymous = mass.Client([node.url], timeout=30)
    assert anonymous.health()["status"] == "ok"  # public
    with pytest.raises(mass.Unauthorized, match="requires an API token") as e:
        anonymous.models()
    assert e.value.status == 401
    with pytest.raises(mass.Unauthorized, match="not known to this node"):
        mass.Client([node.url], token="mass_predict_00000000").models()
    client = mass.Client([node.url], token=token)
    assert client.models() == []
    with pytest.raises(mass.Unauthorized, match="has the predict role; POST /v1/jobs needs write") as e:
        client.train(dataset="d", model="m", learner="linear")
    assert e.value.status == 403
    monkeypatch.setenv("MASS_TOKEN", token)
    assert mass.Client([node.url]).datasets() == []


def test_calls_fail_over_when_the_first_node_is_killed(mesh, client: mass.Client, iris: Dict[str, Any]) -> None:
    first = mesh.nodes[0]
    before = client.predict("blobs", iris["X"][:50])
    first.kill()
    assert not first.alive
    fresh = mass.Client(mesh.urls, timeout=60)
    for c in (client, fresh):
        assert c.health()["peer_id"] != first.peer_id
        assert (c.predict("blobs", iris["X"][:50]) == before).all()
        assert any(m["name"] == "blobs" for m in c.models())
        assert c.dataset("blobs")["manifest"]["rows"] == 300
    with pytest.raises(mass.NoNodeAnswered, match="connection refused") as e:
        mass.Client([first.url], timeout=5).health()
    assert first.url in str(e.value)
    # Training still works with a node down.
    job = fresh.train(dataset="blobs", model="after-failover", learner="linear", seed=4)
    assert job.wait(timeout=120, progress=False)["evaluation"]["accuracy"] > 0.9
