"""Job and study specs as ``POST /v1/jobs`` and ``POST /v1/studies`` read
them (the JSON of ``JobSpec`` and ``StudySpec`` in protocol/src/jobs.rs
and protocol/src/studies.rs), built from the same short forms the CLI
takes (``mlp:64,32``, ``bagging:8``, ``huber:0.5``, ...)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

#: Options of :func:`job_spec` (and so of ``Client.train``), beside
#: ``dataset``, ``model`` and ``learner``.
JOB_OPTIONS = (
    "task",
    "ensemble",
    "epochs",
    "batch_size",
    "learning_rate",
    "l2",
    "loss",
    "patience",
    "seed",
    "placement",
    "pipeline",
    "scale",
    "cross",
    "pca",
    "bins",
    "trees",
    "leaves",
    "max_depth",
    "min_rows",
    "row_fraction",
    "feature_fraction",
    "tree_bins",
)

_TREE_FIELDS = ("trees", "leaves", "max_depth", "min_rows", "row_fraction", "feature_fraction")


def learner_json(learner: Union[str, Mapping[str, Any]], options: Mapping[str, Any]) -> Any:
    """``linear`` (also softmax, logistic, ridge), ``mlp:W1,W2,...`` or
    ``gbdt`` as the API's ``Learner`` JSON; a dict is taken as that JSON.
    Tree settings (``trees``, ``leaves``, ...) apply to ``gbdt``."""
    if isinstance(learner, Mapping):
        return dict(learner)
    text = str(learner).strip()
    if text in ("linear", "softmax", "logistic", "ridge"):
        tree_only = [k for k in _TREE_FIELDS + ("tree_bins",) if options.get(k) is not None]
        if tree_only:
            raise ValueError(f"{', '.join(tree_only)}: tree settings, but the learner is {text}")
        return "linear"
    if text == "gbdt":
        tree: Dict[str, Any] = {}
        for key in _TREE_FIELDS:
            if options.get(key) is not None:
                tree[key] = options[key]
        if options.get("tree_bins") is not None:
            tree["bins"] = int(options["tree_bins"])
        # As the CLI does: --learning-rate and --l2 are the trees' own.
        if options.get("learning_rate") is not None:
            tree["learning_rate"] = float(options["learning_rate"])
        if options.get("l2") is not None:
            tree["l2"] = float(options["l2"])
        return {"gbdt": tree}
    kind, _, widths = text.partition(":")
    if kind == "mlp" and widths:
        hidden: List[int] = []
        for w in widths.split(","):
            try:
                hidden.append(int(w.strip()))
            except ValueError:
                raise ValueError(f"model {text}: '{w}' is not a layer width") from None
        return {"mlp": {"hidden": hidden}}
    raise ValueError(f"model {text}: expected linear, mlp:WIDTH[,WIDTH...] or gbdt")


def ensemble_json(ensemble: Union[str, Mapping[str, Any], None]) -> Any:
    """``single``, ``bagging:N``, ``stacking:N``, ``boosting:N`` or
    ``data-parallel:WORKERS:ROUNDS`` as the API's ``EnsembleSpec`` JSON."""
    if ensemble is None:
        return "single"
    if isinstance(ensemble, Mapping):
        return dict(ensemble)
    text = str(ensemble).strip()
    if text == "single":
        return "single"
    kind, _, rest = text.partition(":")

    def count(v: str) -> int:
        try:
            return int(v)
        except ValueError:
            raise ValueError(f"ensemble {text}: '{v}' is not a count") from None

    if kind in ("bagging", "stacking", "boosting") and rest:
        return {kind: {"members": count(rest)}}
    if kind == "data-parallel":
        workers, _, rounds = rest.partition(":")
        if not rounds:
            raise ValueError(f"ensemble {text}: expected data-parallel:WORKERS:ROUNDS")
        return {"data_parallel": {"workers": count(workers), "rounds": count(rounds)}}
    raise ValueError(
        f"ensemble {text}: expected single, bagging:N, stacking:N, boosting:N or data-parallel:WORKERS:ROUNDS"
    )


def loss_json(loss: Union[str, Mapping[str, Any]]) -> Any:
    """``squared`` or ``huber[:DELTA]``."""
    if isinstance(loss, Mapping):
        return dict(loss)
    text = str(loss).strip()
    if text == "squared":
        return "squared"
    if text == "huber":
        return {"huber": {"delta": 1.0}}
    kind, _, delta = text.partition(":")
    if kind == "huber":
        try:
            return {"huber": {"delta": float(delta)}}
        except ValueError:
            raise ValueError(f"loss {text}: '{delta}' is not a number") from None
    raise ValueError(f"loss {text}: expected squared or huber[:DELTA]")


def task_json(task: Optional[str]) -> Optional[str]:
    if task is None:
        return None
    if task in ("classification", "classify"):
        return "classification"
    if task in ("regression", "regress"):
        return "regression"
    raise ValueError(f"task {task}: expected classification or regression")


def scale_json(scale: str) -> str:
    table = {"standard": "standard", "min-max": "min_max", "minmax": "min_max", "min_max": "min_max", "none": "none"}
    if scale not in table:
        raise ValueError(f"scale {scale}: expected standard, min-max or none")
    return table[scale]


def cross_json(cross: Iterable[Union[str, Sequence[str]]]) -> List[List[str]]:
    pairs = []
    for pair in cross:
        if isinstance(pair, str):
            a, sep, b = pair.partition("*")
            if not sep:
                raise ValueError(f"cross {pair}: expected COLUMN*COLUMN")
            pairs.append([a.strip(), b.strip()])
        else:
            a, b = pair
            pairs.append([str(a), str(b)])
    return pairs


def job_spec(dataset: str, model: str, learner: Union[str, Mapping[str, Any]] = "mlp:128", **options: Any) -> Dict[str, Any]:
    """The JSON of a ``JobSpec``: train ``learner`` on ``dataset`` and
    register the result as ``model/<model>``.

    Options (all optional; the node's defaults apply when left out):
    ``task`` (classification | regression; inferred from the label),
    ``ensemble`` (single | bagging:N | stacking:N | boosting:N |
    data-parallel:W:R), ``epochs``, ``batch_size``, ``learning_rate``,
    ``l2``, ``loss`` (squared | huber[:DELTA]), ``patience``, ``seed``,
    ``placement`` (capacity | uniform), ``pipeline`` (a ``PipelineSpec``
    dict), ``scale`` (standard | min-max | none), ``cross`` (["a*b", ...]),
    ``pca``, ``bins``, and for gbdt ``trees``, ``leaves``, ``max_depth``,
    ``min_rows``, ``row_fraction``, ``feature_fraction``, ``tree_bins``.
    """
    unknown = sorted(k for k in options if k not in JOB_OPTIONS)
    if unknown:
        raise TypeError(f"unknown job option(s) {', '.join(unknown)}; known: {', '.join(JOB_OPTIONS)}")
    spec: Dict[str, Any] = {"learner": learner_json(learner, options)}
    if options.get("epochs") is not None:
        spec["epochs"] = int(options["epochs"])
    if options.get("batch_size") is not None:
        spec["batch_size"] = int(options["batch_size"])
    if options.get("learning_rate") is not None:
        spec["learning_rate"] = float(options["learning_rate"])
    if options.get("l2") is not None:
        spec["l2"] = float(options["l2"])
    if options.get("loss") is not None:
        spec["loss"] = loss_json(options["loss"])
    if options.get("patience") is not None:
        spec["patience"] = int(options["patience"])

    pipeline: Dict[str, Any] = dict(options.get("pipeline") or {})
    if options.get("scale") is not None:
        pipeline["scale"] = scale_json(options["scale"])
    if options.get("cross"):
        pipeline["cross"] = cross_json(options["cross"])
    if options.get("pca") is not None:
        pipeline["pca"] = int(options["pca"])
    if options.get("bins") is not None:
        pipeline["bins"] = int(options["bins"])

    body: Dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "pipeline": pipeline,
        "spec": spec,
        "ensemble": ensemble_json(options.get("ensemble")),
        "seed": int(options.get("seed") or 0),
    }
    task = task_json(options.get("task"))
    if task is not None:
        body["task"] = task
    placement = options.get("placement")
    if placement is not None:
        if placement not in ("capacity", "uniform"):
            raise ValueError(f"placement {placement}: expected capacity or uniform")
        body["placement"] = placement
    return body


def _param_value(name: str, value: Any) -> Dict[str, Any]:
    if isinstance(value, bool):
        raise ValueError(f"space.{name}: {value!r} is neither a number nor a string")
    if isinstance(value, (int, float)):
        return {"number": float(value)}
    if isinstance(value, str):
        return {"text": value}
    raise ValueError(f"space.{name}: {value!r} is neither a number nor a string")


def space_json(space: Mapping[str, Any]) -> Dict[str, Any]:
    """A search space as the API's ``Space`` JSON. Each parameter is a list
    of choices (``["linear", "mlp:32"]``) or a one-entry dict of a range:
    ``{"uniform": [lo, hi]}``, ``{"log_uniform": [lo, hi]}``,
    ``{"int": [lo, hi]}`` or ``{"log_int": [lo, hi]}`` (the TOML of
    ``mass tune --space``)."""
    out: Dict[str, Any] = {}
    for name, domain in space.items():
        if isinstance(domain, (list, tuple)):
            out[name] = {"choice": [_param_value(name, v) for v in domain]}
        elif isinstance(domain, Mapping) and len(domain) == 1:
            kind, bounds = next(iter(domain.items()))
            if kind not in ("uniform", "log_uniform", "int", "log_int", "choice"):
                raise ValueError(f"space.{name}: '{kind}': expected uniform, log_uniform, int or log_int")
            if kind == "choice":
                out[name] = {"choice": [v if isinstance(v, Mapping) else _param_value(name, v) for v in bounds]}
                continue
            lo, hi = bounds
            if kind in ("int", "log_int"):
                if float(lo) != int(lo) or float(hi) != int(hi):
                    raise ValueError(f"space.{name}: {kind} takes whole numbers")
                out[name] = {kind: [int(lo), int(hi)]}
            else:
                out[name] = {kind: [float(lo), float(hi)]}
        else:
            raise ValueError(
                f"space.{name}: expected a list of choices or {{uniform | log_uniform | int | log_int: [LOW, HIGH]}}"
            )
    return out


def strategy_json(
    strategy: Union[str, Mapping[str, Any]],
    *,
    trials: int,
    grid_steps: int = 4,
    startup: Optional[int] = None,
    population: int = 8,
    mutation: float = 0.2,
) -> Any:
    """grid, random, tpe or genetic, with the CLI's defaults."""
    if isinstance(strategy, Mapping):
        return dict(strategy)
    if strategy == "grid":
        return {"grid": {"steps": int(grid_steps)}}
    if strategy == "random":
        return "random"
    if strategy == "tpe":
        return {"tpe": {"startup": int(startup if startup is not None else min(max(trials // 4, 2), 10))}}
    if strategy == "genetic":
        return {"genetic": {"population": int(population), "mutation": float(mutation)}}
    raise ValueError(f"strategy {strategy}: expected grid, random, tpe or genetic")


def asha_json(asha: Union[None, str, Tuple[int, int], Mapping[str, Any]]) -> Optional[Dict[str, int]]:
    """Successive halving, ``"MIN:ETA"`` or ``(min_resource, eta)``."""
    if asha is None:
        return None
    if isinstance(asha, Mapping):
        return {"min_resource": int(asha["min_resource"]), "eta": int(asha["eta"])}
    if isinstance(asha, str):
        low, sep, factor = asha.partition(":")
        if not sep:
            raise ValueError(f"asha {asha}: expected MIN:ETA")
        return {"min_resource": int(low), "eta": int(factor)}
    min_resource, eta = asha
    return {"min_resource": int(min_resource), "eta": int(eta)}


METRICS = ("accuracy", "macro_f1", "log_loss", "r2", "rmse", "mae")


def metric_json(metric: Optional[str]) -> Optional[str]:
    if metric is None:
        return None
    aliases = {"f1": "macro_f1", "logloss": "log_loss"}
    metric = aliases.get(metric, metric)
    if metric not in METRICS:
        raise ValueError(f"metric {metric}: expected {', '.join(METRICS)}")
    return metric
