"""Handles of running work: :class:`Job` (a training job), :class:`Study`
(a hyperparameter study) and :class:`Scoring` (a batch prediction). All are
followed from any node."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .errors import JobFailed, MassError, NoNodeAnswered, NotFound, WaitTimeout

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

#: How long a wait keeps polling through "not found" (a record not yet
#: gossiped to the node asked) or no node answering (nodes restarting).
GRACE_SECONDS = 30.0


def state_of(state: Any) -> Tuple[str, Optional[str]]:
    """A ``JobState``/``StudyState`` JSON value as (name, failure reason):
    ``"running"`` -> ("running", None), ``{"failed": "why"}`` -> ("failed", "why")."""
    if isinstance(state, str):
        return state, None
    if isinstance(state, dict) and len(state) == 1:
        name, reason = next(iter(state.items()))
        return str(name), (str(reason) if reason is not None else None)
    return str(state), None


def _tqdm(**kwargs: Any) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(**kwargs)


class _Handle:
    _kind = "job"
    _path = "v1/jobs"

    def __init__(self, client: "Client", id: str) -> None:
        self.client = client
        self.id = str(id)
        self._record: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        state = state_of(self._record["state"])[0] if self._record else "?"
        return f"<{type(self).__name__} {self.id} {state}>"

    def record(self) -> Dict[str, Any]:
        """The latest record as the mesh holds it (fetched now)."""
        self._record = self.client._http.json("GET", f"{self._path}/{self.id}")
        return self._record

    def _record_after_change(self, wait: float) -> Dict[str, Any]:
        """The record once it next changes on the node asked, or after
        ``wait`` seconds (at once when it is over)."""
        http = self.client._http
        self._record = http.json(
            "GET", f"{self._path}/{self.id}", query=[("wait_ms", int(wait * 1000))], timeout=http.timeout + wait
        )
        return self._record

    def status(self) -> str:
        """``pending``, ``running``, ``completed``, ``failed`` or ``cancelled``."""
        return state_of(self.record()["state"])[0]

    def done(self) -> bool:
        """Whether the work is over (completed, failed or cancelled)."""
        return self.status() in ("completed", "failed", "cancelled")

    def cancel(self) -> Dict[str, Any]:
        """Asks the mesh to stop it at its driver's next checkpoint; answers
        the record marked cancelled. A :class:`~mass.Conflict` when it is
        already over."""
        self._record = self.client._http.json("POST", f"{self._path}/{self.id}/cancel")
        return self._record

    def _raise_if_failed(self, record: Dict[str, Any]) -> None:
        name, reason = state_of(record["state"])
        if name in ("failed", "cancelled"):
            raise JobFailed(self._kind, self.id, name, reason, record)

    def _follow(self, timeout: Optional[float], bar: Any, show: Any) -> Dict[str, Any]:
        """Polls until over, ``show``-ing each record on ``bar`` (closed
        at the end); raises when the work failed or was cancelled."""
        try:
            record = self._poll_until_over(timeout, show)
        finally:
            if bar is not None:
                bar.close()
        self._raise_if_failed(record)
        return record

    def _poll_until_over(self, timeout: Optional[float], on_record: Any) -> Dict[str, Any]:
        """Reads the record until it is over. Once the node asked knows it,
        the record is read by waiting on the node for its next change (a
        second at most), so its end is seen when it comes; after trouble it
        is read again after a pause."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = 0.2
        trouble_since: Optional[float] = None
        waiting = False
        while True:
            left = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            try:
                record = self._record_after_change(left) if waiting and left > 0 else self.record()
                trouble_since = None
            except (NotFound, NoNodeAnswered):
                # Not yet heard of by the node asked, or no node answering
                # for a moment (one restarting): keep trying a while.
                now = time.monotonic()
                trouble_since = trouble_since or now
                if now - trouble_since > GRACE_SECONDS:
                    raise
                record = None
                waiting = False
            if record is not None:
                on_record(record)
                if state_of(record["state"])[0] in ("completed", "failed", "cancelled"):
                    return record
            if deadline is not None and time.monotonic() >= deadline:
                state = state_of(record["state"])[0] if record else "unknown"
                raise WaitTimeout(f"{self._kind} {self.id} is still {state} after {timeout} s")
            if record is not None:
                waiting = True
                continue  # the next read waits on the node
            pause = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            interval = min(interval * 1.5, 1.0)


class Job(_Handle):
    """A training job submitted to the mesh (``POST /v1/jobs``).

    The job runs on the mesh whatever the client does; the handle reads
    its record from any node::

        job = client.train(dataset="iris", model="iris-mlp", learner="mlp:16", epochs=20)
        job.wait()            # progress bar when tqdm is installed
        job.metrics["accuracy"]
    """

    _kind = "job"
    _path = "v1/jobs"

    def progress(self) -> List[Dict[str, Any]]:
        """What each running task last reported: ``task``, ``peer``,
        ``epoch``, ``epochs``, ``loss`` (``GET /v1/jobs/{id}/progress``)."""
        return self.client._http.json("GET", f"v1/jobs/{self.id}/progress")

    @property
    def model(self) -> Optional[str]:
        """The name the trained model is registered under."""
        record = self._record or self.record()
        return record["spec"]["model"]

    @property
    def metrics(self) -> Optional[Dict[str, Any]]:
        """The test metrics (the record's ``evaluation``: accuracy, macro_f1,
        log_loss, roc_auc, ... or r2, rmse, mae), once the job completed;
        ``None`` before."""
        record = self._record
        if record is None or record.get("evaluation") is None:
            record = self.record()
        return record.get("evaluation")

    def wait(self, timeout: Optional[float] = None, progress: bool = True) -> Dict[str, Any]:
        """Polls until the job is over and returns its final record.

        Raises :class:`~mass.JobFailed` when it failed or was cancelled, and
        :class:`~mass.WaitTimeout` after ``timeout`` seconds (the job runs
        on). With ``progress`` and tqdm installed, a bar shows the
        sub-models trained, the epoch and the loss.
        """
        bar = _tqdm(total=None, desc=f"job {self.id[:12]}", unit="model", leave=False) if progress else None

        def show(record: Dict[str, Any]) -> None:
            if bar is None:
                return
            tasks = record.get("tasks") or []
            trained = sum(1 for t in tasks if t.get("weights"))
            if tasks and bar.total != len(tasks):
                bar.total = len(tasks)
            bar.n = trained
            postfix: Dict[str, Any] = {"state": state_of(record["state"])[0]}
            try:
                live = [t for t in self.progress() if t.get("epoch", 0) < t.get("epochs", 0)]
            except MassError:
                live = []
            if live:
                postfix["epoch"] = f"{min(t['epoch'] for t in live)}/{live[0]['epochs']}"
                postfix["loss"] = f"{sum(t['loss'] for t in live) / len(live):.4f}"
                postfix["nodes"] = len({t["peer"] for t in live})
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()

        return self._follow(timeout, bar, show)


class Study(_Handle):
    """A hyperparameter study (``POST /v1/studies``), driven by the mesh.

    The winner is registered as ``model/<name>``; ``record()["trials"]``
    holds every trial's parameters, runs and scores.
    """

    _kind = "study"
    _path = "v1/studies"

    @property
    def best(self) -> Optional[Dict[str, Any]]:
        """The winning trial (its ``number``, ``params``, ``runs``), once known."""
        record = self._record or self.record()
        if not record.get("best"):
            return None
        number = record["best"][0]
        return next((t for t in record["trials"] if t["number"] == number), None)

    @property
    def metrics(self) -> Optional[Dict[str, Any]]:
        """The winner's metrics on the test rows, once the study completed."""
        record = self._record
        if record is None or record.get("test") is None:
            record = self.record()
        return record.get("test")

    def wait(self, timeout: Optional[float] = None, progress: bool = True) -> Dict[str, Any]:
        """Polls until the study is over; returns its journal. Raises
        :class:`~mass.JobFailed` when it failed or was cancelled,
        :class:`~mass.WaitTimeout` after ``timeout`` seconds."""
        bar = _tqdm(total=None, desc=f"study {self.id[:12]}", unit="trial", leave=False) if progress else None

        def show(record: Dict[str, Any]) -> None:
            if bar is None:
                return
            bar.total = record["spec"]["trials"]
            trials = record.get("trials") or []
            bar.n = sum(1 for t in trials if state_of(t["state"])[0] != "running")
            scores = [s for s in (_score(t) for t in trials) if s is not None]
            postfix: Dict[str, Any] = {"state": state_of(record["state"])[0]}
            if scores:
                metric = record["spec"].get("metric") or "accuracy"
                best = min(scores) if metric in ("log_loss", "rmse", "mae") else max(scores)
                postfix[metric] = f"{best:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()

        return self._follow(timeout, bar, show)


class Scoring(_Handle):
    """A batch prediction running as a job (``POST /v1/models/{name}/batch``
    with ``"wait": false``): each shard scored where it lives, the record
    checkpointed, carried on by another node when its driver dies::

        scoring = client.score("iris-mlp", "iris")
        scoring.wait()                      # a bar of shards scored
        csv = client.get_blob(scoring.result["blob"])
    """

    _kind = "scoring"
    _path = "v1/scorings"

    def cancel(self) -> Dict[str, Any]:
        raise MassError("a scoring job cannot be cancelled; it ends by itself (its parts are kept)")

    @property
    def result(self) -> Optional[Dict[str, Any]]:
        """What the job wrote (``blob``: the CSV, ``rows``, ``test`` metrics,
        ``shard_peers``, ``into``), once completed; ``None`` before."""
        record = self._record
        if record is None or record.get("result") is None:
            record = self.record()
        return record.get("result")

    def wait(self, timeout: Optional[float] = None, progress: bool = True) -> Dict[str, Any]:
        """Polls until the job is over and returns its final record. Raises
        :class:`~mass.JobFailed` when it failed, :class:`~mass.WaitTimeout`
        after ``timeout`` seconds (the job runs on)."""
        bar = _tqdm(total=None, desc=f"scoring {self.id[:12]}", unit="shard", leave=False) if progress else None

        def show(record: Dict[str, Any]) -> None:
            if bar is None:
                return
            shards = record.get("shards") or []
            bar.total = len(shards)
            bar.n = sum(1 for s in shards if s is not None)
            bar.refresh()

        return self._follow(timeout, bar, show)


def _score(trial: Dict[str, Any]) -> Optional[float]:
    for run in reversed(trial.get("runs") or []):
        if run.get("score") is not None:
            return float(run["score"])
    return None
