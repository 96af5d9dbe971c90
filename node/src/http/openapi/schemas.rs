//! Schemas written by hand, for the bodies whose Rust types do not derive
//! one: `JobSpec` and `StudySpec` nest enums with hand-written serde, a
//! predict body is read by hand (JSON, .npy or Arrow) with no type at all,
//! and raw bytes are `Binary` (utoipa would call `[u8]` an integer array).
//! Also the protocol types the handlers' annotations name, so each handler
//! file needs one import (`doc::...`).

use std::borrow::Cow;

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{RefOr, schema::Schema},
};

pub use mass_protocol::{
    ContentId,
    api::{BlobInfo, DrainStatus, ErrorBody, FitPipeline, Health, PeerView, RefView, Rollback, SetRef},
    serving::{BatchPredict, Compose, CompressRequest, ImportModel, ModelSummary, ModelVersion, Prediction, Promote},
};

/// A schema from its JSON; the literals below are checked by a test.
fn parse(json: serde_json::Value) -> RefOr<Schema> {
    serde_json::from_value(json).expect("a hand-written schema parses")
}

/// Declares a marker type whose schema is the given JSON, under `name`.
macro_rules! hand_written {
    ($(#[$doc:meta])* $marker:ident, $name:literal, $json:expr) => {
        $(#[$doc])*
        pub struct $marker;

        impl $marker {
            pub(crate) fn json() -> serde_json::Value {
                $json
            }
        }

        impl PartialSchema for $marker {
            fn schema() -> RefOr<Schema> {
                parse(Self::json())
            }
        }

        impl ToSchema for $marker {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

hand_written!(
    /// Body of `POST /v1/jobs` ([`mass_protocol::jobs::JobSpec`]).
    JobSpecSchema,
    "JobSpec",
    serde_json::json!({
        "type": "object",
        "required": [
            "model",
            "dataset",
            "ensemble"
        ],
        "properties": {
            "model": {
                "type": "string"
            },
            "dataset": {
                "type": "string"
            },
            "pipeline": {
                "type": "object",
                "properties": {
                    "impute": {
                        "oneOf": [
                            {
                                "type": "string"
                            },
                            {
                                "type": "object"
                            }
                        ],
                        "description": "\"mean\", \"median\", \"most_frequent\", {\"constant\": V} or \"keep\""
                    },
                    "scale": {
                        "enum": [
                            "none",
                            "standard",
                            "min_max"
                        ],
                        "type": "string"
                    },
                    "unseen": {
                        "enum": [
                            "ignore",
                            "error"
                        ],
                        "type": "string"
                    },
                    "select": {
                        "oneOf": [
                            {
                                "type": "string"
                            },
                            {
                                "type": "object"
                            }
                        ],
                        "description": "\"all\", {\"variance_threshold\": V} or {\"mutual_info\": {\"k\": K}}"
                    },
                    "encode": {
                        "enum": [
                            "one_hot",
                            "ordinal"
                        ],
                        "type": "string"
                    },
                    "bins": {
                        "type": [
                            "integer",
                            "null"
                        ],
                        "description": "quantile bins per numeric column (indicators)"
                    },
                    "cross": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "string"
                            },
                            "minItems": 2,
                            "maxItems": 2
                        },
                        "description": "column pairs: numeric pairs multiply, categorical pairs hash"
                    },
                    "cross_buckets": {
                        "type": "integer"
                    },
                    "pca": {
                        "type": [
                            "integer",
                            "null"
                        ],
                        "description": "principal components replacing the numeric features"
                    }
                }
            },
            "spec": {
                "type": "object",
                "description": "Every field has a default: an MLP of 128 units trained to a step budget with early stopping.",
                "properties": {
                    "learner": {
                        "oneOf": [
                            {
                                "type": "string"
                            },
                            {
                                "type": "object"
                            }
                        ],
                        "description": "\"linear\" (softmax/logistic or ridge, solved exactly), {\"mlp\": {\"hidden\": [W, ...]}} or {\"gbdt\": {\"trees\": 100, \"leaves\": 31, \"max_depth\": 0, \"min_rows\": 20, \"learning_rate\": 0.1, \"l2\": 0, \"row_fraction\": 1, \"feature_fraction\": 1, \"bins\": 255}}"
                    },
                    "epochs": {
                        "type": [
                            "integer",
                            "null"
                        ],
                        "description": "null: as many as converge (a budget of optimizer steps with early stopping)"
                    },
                    "batch_size": {
                        "type": "integer"
                    },
                    "learning_rate": {
                        "type": "number"
                    },
                    "l2": {
                        "type": [
                            "number",
                            "null"
                        ],
                        "description": "null: the learner's default (1/training rows for linear models, as scikit-learn)"
                    },
                    "loss": {
                        "oneOf": [
                            {
                                "type": "string"
                            },
                            {
                                "type": "object"
                            }
                        ],
                        "description": "\"squared\" or {\"huber\": {\"delta\": D}} (regression)"
                    },
                    "patience": {
                        "type": [
                            "integer",
                            "null"
                        ],
                        "description": "epochs or boosting rounds without a better validation loss before stopping; 0: never"
                    }
                }
            },
            "ensemble": {
                "oneOf": [
                    {
                        "type": "string"
                    },
                    {
                        "type": "object"
                    }
                ],
                "description": "\"single\", {\"bagging\": {\"members\": N}}, {\"stacking\": {\"members\": N}}, {\"boosting\": {\"members\": N}} or {\"data_parallel\": {\"workers\": W, \"rounds\": R}}"
            },
            "seed": {
                "type": "integer"
            },
            "task": {
                "type": [
                    "string",
                    "null"
                ],
                "enum": [
                    "classification",
                    "regression"
                ],
                "description": "inferred from the label when omitted; an ambiguous numeric label is refused with a sentence asking for it"
            },
            "placement": {
                "type": "string",
                "enum": [
                    "capacity",
                    "uniform"
                ],
                "default": "capacity",
                "description": "how sub-models are placed on nodes: where each finishes soonest by measured capacity and load, or the same share on every node holding the data"
            },
            "cv": {
                "type": "integer",
                "minimum": 2,
                "maximum": 20,
                "description": "K-fold cross-validation: K more models of the learner, each trained without one fold of the training rows and scored on it; the model's cross_validation holds the scores."
            },
            "trial": {
                "type": [
                    "object",
                    "null"
                ],
                "description": "set by a study for its trials: {study, trial, resource}"
            }
        }
    })
);

hand_written!(
    /// Body of `POST /v1/studies` ([`mass_protocol::studies::StudySpec`]).
    StudySpecSchema,
    "StudySpec",
    serde_json::json!({
        "type": "object",
        "required": [
            "name",
            "base",
            "space",
            "strategy",
            "trials",
            "parallel"
        ],
        "additionalProperties": false,
        "properties": {
            "name": {
                "type": "string",
                "description": "the winner is registered as model/<name>"
            },
            "base": {
                "$ref": "#/components/schemas/JobSpec",
                "description": "what every trial starts from (dataset, pipeline, task, seed); the space's parameters override it"
            },
            "space": {
                "type": "object",
                "description": "{param: {choice|uniform|log_uniform|int|log_int: ...}}"
            },
            "strategy": {
                "oneOf": [
                    {
                        "type": "string"
                    },
                    {
                        "type": "object"
                    }
                ],
                "description": "\"random\", {\"grid\": {\"steps\": N}}, {\"tpe\": {\"startup\": N}} or {\"genetic\": {\"population\": N, \"mutation\": P}}"
            },
            "asha": {
                "type": [
                    "object",
                    "null"
                ],
                "description": "successive halving: {\"min_resource\": R, \"eta\": E}",
                "properties": {
                    "min_resource": {
                        "type": "integer",
                        "minimum": 0
                    },
                    "eta": {
                        "type": "integer",
                        "minimum": 0
                    }
                }
            },
            "metric": {
                "type": [
                    "string",
                    "null"
                ],
                "enum": [
                    "accuracy",
                    "macro_f1",
                    "log_loss",
                    "r2",
                    "rmse",
                    "mae",
                    null
                ],
                "description": "measured on the validation rows; accuracy for classes, r2 for numbers when omitted"
            },
            "trials": {
                "type": "integer",
                "minimum": 0,
                "description": "trial budget, at most http.max_trials"
            },
            "parallel": {
                "type": "integer",
                "minimum": 0,
                "description": "trials running at once"
            },
            "seed": {
                "type": "integer",
                "minimum": 0
            }
        }
    })
);

hand_written!(
    /// JSON body of `POST /v1/models/{name}/predict`, read by
    /// `models::parse_predict`.
    PredictRequestSchema,
    "PredictRequest",
    serde_json::json!({
        "type": "object",
        "required": [
            "rows"
        ],
        "properties": {
            "rows": {
                "type": "array",
                "description": "objects keyed by column name, or arrays of the feature columns in schema order (label left out)",
                "items": {
                    "oneOf": [
                        {
                            "type": "array"
                        },
                        {
                            "type": "object"
                        }
                    ]
                }
            },
            "allow_missing": {
                "type": "boolean",
                "default": false,
                "description": "impute null and NaN with the pipeline instead of refusing them"
            }
        }
    })
);

hand_written!(
    /// A body of raw bytes: a blob, a .npy matrix, an Arrow stream, a file.
    Binary,
    "Binary",
    serde_json::json!({ "type": "string", "format": "binary" })
);

/// Answer of `POST /v1/jobs` and `POST /v1/studies`: the new job's or
/// study's id.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Submitted {
    id: ContentId,
}

/// Answer of `POST /v1/models/{name}/batch` with `"wait": false`: the
/// scoring job to follow at `GET /v1/scorings/{id}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ScoringOpened {
    scoring: ContentId,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key the schema type does not know would be dropped silently.
    #[test]
    fn hand_written_schemas_keep_every_key() {
        for json in [JobSpecSchema::json(), StudySpecSchema::json(), PredictRequestSchema::json(), Binary::json()] {
            assert_eq!(serde_json::to_value(parse(json.clone())).unwrap(), json);
        }
    }
}
