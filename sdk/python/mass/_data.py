"""Turning Python data (lists, numpy arrays, pandas frames) into what the
HTTP API reads: CSV or ``.npy`` bodies for ``POST /v1/datasets``, JSON rows
for ``POST /v1/models/{name}/predict``. numpy and pandas are optional."""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, List, Optional, Sequence, Tuple

_numpy: Any = None
_pandas: Any = None
_probed = {"numpy": False, "pandas": False}


def numpy() -> Any:
    """The numpy module, or None when it is not installed."""
    global _numpy
    if not _probed["numpy"]:
        _probed["numpy"] = True
        try:
            import numpy as np

            _numpy = np
        except ImportError:
            _numpy = None
    return _numpy


def pandas() -> Any:
    """The pandas module, or None when it is not installed."""
    global _pandas
    if not _probed["pandas"]:
        _probed["pandas"] = True
        try:
            import pandas as pd

            _pandas = pd
        except ImportError:
            _pandas = None
    return _pandas


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def is_dataframe(obj: Any) -> bool:
    # Checked by module first, so pandas is never imported for plain data.
    return _module_of(obj) == "pandas" and pandas() is not None and isinstance(obj, pandas().DataFrame)


def is_series(obj: Any) -> bool:
    return _module_of(obj) == "pandas" and pandas() is not None and isinstance(obj, pandas().Series)


def is_ndarray(obj: Any) -> bool:
    return _module_of(obj) == "numpy" and numpy() is not None and isinstance(obj, numpy().ndarray)


def cell(value: Any) -> Any:
    """One value as the predict API reads it: numbers, text, booleans, and
    ``None`` for a missing value (NaN and pandas' NA too). Infinities are
    sent as ``"Infinity"`` so the node can name them in its refusal."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    np = numpy()
    if np is not None:
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return cell(float(value))
        if isinstance(value, np.str_):
            return str(value)
    pd = pandas() if _module_of(value) == "pandas" else None
    if pd is not None:
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
    if hasattr(value, "item") and callable(value.item):
        try:
            return cell(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bytes, int, float, bool)) or (
        numpy() is not None and isinstance(value, numpy().generic)
    )


def numeric_matrix(X: Any) -> Any:
    """``X`` as a 2-D float64 numpy array when it is a numeric numpy array
    (sent as a binary ``.npy`` body), else None (sent as JSON rows)."""
    np = numpy()
    if np is None or not is_ndarray(X) or X.dtype.kind not in "fiub" or X.ndim not in (1, 2):
        return None
    matrix = np.asarray(X, dtype=np.float64)
    return np.ascontiguousarray(matrix.reshape(1, -1) if matrix.ndim == 1 else matrix)


def to_rows(X: Any) -> List[Any]:
    """Rows for ``POST /v1/models/{name}/predict``.

    - a pandas DataFrame: one object per row, keyed by column name (so the
      columns may come in any order); a Series: one such row;
    - a 2-D numpy array or a list of lists: arrays of feature values in the
      dataset's column order (label left out);
    - a list of dicts: named rows as they are;
    - a dict of columns (``{"a": [..], "b": [..]}``): named rows;
    - a 1-D array or a flat list of values: one row.
    """
    if is_dataframe(X):
        columns = [str(c) for c in X.columns]
        return [{c: cell(v) for c, v in zip(columns, row)} for row in X.itertuples(index=False, name=None)]
    if is_series(X):
        return [{str(k): cell(v) for k, v in X.items()}]
    if is_ndarray(X):
        np = numpy()
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array of rows, got shape {X.shape}")
        if X.dtype.kind in "fiub":
            values = X.astype(np.float64) if X.dtype.kind == "f" else X
            if X.dtype.kind == "f" and np.isfinite(values).all():
                return values.tolist()
            if X.dtype.kind in "iub":
                return X.tolist()
        return [[cell(v) for v in row] for row in X.tolist()]
    if isinstance(X, dict):
        if X and all(not _is_scalar(v) for v in X.values()):
            columns = list(X.keys())
            lengths = {len(v) for v in X.values()}
            if len(lengths) != 1:
                raise ValueError("X: the columns of the dict have different lengths")
            n = lengths.pop()
            return [{str(c): cell(X[c][i]) for c in columns} for i in range(n)]
        return [{str(k): cell(v) for k, v in X.items()}]
    if isinstance(X, (list, tuple)):
        if not X:
            return []
        if all(_is_scalar(v) for v in X):
            return [[cell(v) for v in X]]
        rows: List[Any] = []
        for r, row in enumerate(X):
            if isinstance(row, dict):
                rows.append({str(k): cell(v) for k, v in row.items()})
            elif is_series(row):
                rows.append({str(k): cell(v) for k, v in row.items()})
            elif isinstance(row, (list, tuple)) or is_ndarray(row):
                rows.append([cell(v) for v in (row.tolist() if is_ndarray(row) else row)])
            else:
                raise ValueError(f"X[{r}]: expected a row (a list of values or a dict of columns), got {type(row).__name__}")
        return rows
    raise TypeError(f"X: expected a numpy array, a pandas DataFrame, a list of rows or a dict, got {type(X).__name__}")


def _csv_value(value: Any) -> str:
    v = cell(value)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


def csv_bytes(header: Sequence[str], rows: Any) -> bytes:
    """A CSV file (with header) of ``rows``; missing values are empty cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])
    return out.getvalue().encode("utf-8")


def dataframe_csv(frame: Any) -> bytes:
    """A DataFrame as CSV, without its index."""
    try:
        text = frame.to_csv(index=False, lineterminator="\n")
    except TypeError:  # pandas before 1.5
        text = frame.to_csv(index=False, line_terminator="\n")
    return text.encode("utf-8")


def npy_bytes(array: Any) -> bytes:
    """An array as a ``.npy`` file of a type the node reads (little-endian
    floats, integers or booleans, C order), as bytes when every value is a
    whole number in 0..255."""
    np = numpy()
    a = np.asarray(array)
    kind = a.dtype.kind
    if kind in "fiu" and a.size and bool(np.all((a >= 0) & (a <= 255) & (a == np.floor(a)) & ~np.signbit(a))):
        # Whole numbers in 0..255 (pixels) go as bytes: an eighth of the
        # size of float64, and the node keeps them as bytes.
        a = a.astype("|u1")
    elif kind == "f":
        a = a.astype("<f4" if a.dtype.itemsize <= 4 else "<f8")
    elif kind in "iu":
        a = a.astype(a.dtype.newbyteorder("<"))
    elif kind == "b":
        a = a.astype("|b1")
    else:
        raise TypeError(f"dtype {a.dtype} is not a number type")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(a), allow_pickle=False)
    return buffer.getvalue()


def _numeric_array(values: Any, ndim: int) -> Optional[Any]:
    """``values`` as a numeric numpy array of ``ndim`` dimensions, or None."""
    np = numpy()
    if np is None:
        return None
    try:
        a = np.asarray(values)
    except (TypeError, ValueError):
        return None
    if ndim == 1 and a.ndim == 2 and a.shape[1] == 1:
        a = a.ravel()
    if a.ndim != ndim or a.dtype.kind not in "fiub":
        return None
    return a


def dataset_body(data: Any, label: Optional[str]) -> Tuple[bytes, str]:
    """The body of ``POST /v1/datasets`` for in-memory data, and the label
    column's name.

    - a pandas DataFrame: CSV (``label`` must name one of its columns);
    - ``(X, y)``: with numpy and numeric arrays, the labels ``.npy`` followed
      by the features ``.npy`` (columns ``f0..fN-1``); a DataFrame ``X`` is
      sent as CSV with ``y`` added as the label column; anything else as a
      CSV with the same column names;
    - ``bytes``: a CSV (or gzip CSV, or ``.npy`` pair) as it is.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        if not label:
            raise ValueError("label: name the label column")
        return bytes(data), label
    if is_dataframe(data):
        if not label:
            raise ValueError("label: name the DataFrame's label column")
        if label not in [str(c) for c in data.columns]:
            raise ValueError(f"label: the DataFrame has no column '{label}' (columns: {', '.join(map(str, data.columns))})")
        return dataframe_csv(data), label
    if isinstance(data, tuple) and len(data) == 2:
        X, y = data
        if isinstance(X, (str, bytes, os.PathLike)) or isinstance(y, (str, bytes, os.PathLike)):
            raise TypeError("data: (X, y) takes arrays, not file names; for .npy files pass (np.load(x), np.load(y))")
        if is_dataframe(X):
            name = label or (str(y.name) if is_series(y) and y.name is not None else "label")
            if name in [str(c) for c in X.columns]:
                raise ValueError(f"label: '{name}' is already a column of X; give another label name")
            frame = X.copy()
            frame.columns = [str(c) for c in frame.columns]
            frame[name] = list(y.tolist() if hasattr(y, "tolist") else y)
            return dataframe_csv(frame), name
        name = label or "label"
        features = _numeric_array(X, 2)
        labels = _numeric_array(y, 1)
        if features is not None and labels is not None:
            if features.shape[0] != labels.shape[0]:
                raise ValueError(f"X has {features.shape[0]} rows but y has {labels.shape[0]}")
            return npy_bytes(labels) + npy_bytes(features), name
        rows = [list(r.tolist() if is_ndarray(r) else r) for r in (X.tolist() if is_ndarray(X) else X)]
        ys = list(y.tolist() if hasattr(y, "tolist") else y)
        if len(rows) != len(ys):
            raise ValueError(f"X has {len(rows)} rows but y has {len(ys)}")
        width = len(rows[0]) if rows else 0
        header = [f"f{i}" for i in range(width)] + [name]
        if name in header[:-1]:
            raise ValueError(f"label: '{name}' collides with a feature column name")
        return csv_bytes(header, (list(r) + [v] for r, v in zip(rows, ys))), name
    raise TypeError(
        "data: expected a CSV path, a pandas DataFrame, an (X, y) pair or CSV bytes, " f"got {type(data).__name__}"
    )


def as_list(values: Any) -> List[Any]:
    if hasattr(values, "tolist"):
        return list(values.tolist())
    return list(values)


def column_names(X: Any) -> Optional[List[str]]:
    """The column names of a DataFrame, else None."""
    if is_dataframe(X):
        return [str(c) for c in X.columns]
    return None
