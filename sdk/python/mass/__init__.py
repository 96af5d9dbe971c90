"""Python client of Mass, a peer-to-peer ML compute mesh.

::

    import mass

    client = mass.Client(["http://10.0.0.1:8080", "http://10.0.0.2:8080"], token=None)
    client.put_dataset("iris", frame, label="species")        # a DataFrame, a CSV path or (X, y)
    job = client.train(dataset="iris", model="iris-mlp", learner="mlp:16", epochs=30)
    job.wait()                                               # raises mass.JobFailed if it fails
    client.predict("iris-mlp", frame.drop(columns="species")) # a numpy array of classes

    clf = mass.MassClassifier(nodes=[...], model="mlp:64").fit(X, y)   # scikit-learn style

Only the standard library is needed; numpy, pandas, tqdm and scikit-learn
are used when installed.
"""

from .client import DEFAULT_TIMEOUT, LONG_TIMEOUT, Client, Prediction
from .errors import (
    BadRequest,
    Conflict,
    JobFailed,
    MassError,
    NoNodeAnswered,
    NotFound,
    Unauthorized,
    WaitTimeout,
)
from .estimators import MassClassifier, MassRegressor, NotFittedError
from .jobs import Job, Scoring, Study
from .specs import job_spec

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Prediction",
    "Job",
    "Scoring",
    "Study",
    "MassClassifier",
    "MassRegressor",
    "MassError",
    "NoNodeAnswered",
    "BadRequest",
    "NotFound",
    "Conflict",
    "Unauthorized",
    "JobFailed",
    "WaitTimeout",
    "NotFittedError",
    "job_spec",
    "DEFAULT_TIMEOUT",
    "LONG_TIMEOUT",
]
