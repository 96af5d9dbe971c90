//! The route table, written once: the same list registers the routes with
//! actix, names them for the OpenAPI check (`ROUTES`) and gathers the
//! handlers' `#[utoipa::path]` operations (`Operations`). A route cannot be
//! added without an annotated handler (it would not compile) nor without the
//! check comparing its method and path with the document.

use actix_web::web;

use super::{blobs, dashboard, datasets, jobs, models, pipelines, refs, studies};

macro_rules! routes {
    ($($method:ident $path:literal => $($handler:ident)::+;)*) => {
        /// Every route: method and actix pattern, in registration order
        /// (read by the OpenAPI check only).
        #[cfg(test)]
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// Registers every route, in the order of the table.
        pub fn register(config: &mut web::ServiceConfig) {
            $(config.route($path, web::$method().to($($handler)::+));)*
        }

        /// The operations of every routed handler.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($($handler)::+),*))]
        pub struct Operations;
    };
}

// Order matters: actix tries patterns in turn, so each `{name:.+}` pattern
// comes after the longer patterns it would also match.
routes! {
    get "/v1/health" => super::health;
    get "/v1/peers" => super::peers;
    get "/v1/node/drain" => super::drain_status;
    post "/v1/node/drain" => super::drain;
    get "/metrics" => super::metrics;
    get "/" => dashboard::index;
    get "/dashboard/{file}" => dashboard::asset;
    put "/v1/blobs" => blobs::put;
    get "/v1/blobs" => blobs::list;
    get "/v1/blobs/{id}" => blobs::get;
    delete "/v1/blobs/{id}" => blobs::unpin;
    post "/v1/gc" => blobs::gc;
    post "/v1/jobs" => jobs::submit;
    get "/v1/jobs" => jobs::list;
    get "/v1/jobs/{id}" => jobs::show;
    get "/v1/jobs/{id}/progress" => jobs::progress;
    post "/v1/jobs/{id}/cancel" => jobs::cancel;
    post "/v1/studies" => studies::submit;
    get "/v1/studies" => studies::list;
    get "/v1/studies/{id}" => studies::show;
    post "/v1/studies/{id}/cancel" => studies::cancel;
    get "/v1/models" => models::list;
    get "/v1/models/{name}" => models::show;
    post "/v1/models/{name}/predict" => models::predict;
    post "/v1/models/{name}/promote" => models::promote;
    post "/v1/models/{name}/rollback" => models::rollback;
    post "/v1/models/{name}/batch" => models::batch_predict;
    get "/v1/scorings/{id}" => models::scoring_show;
    post "/v1/models/{name}/compose" => models::compose;
    get "/v1/models/{name}/export" => models::export;
    post "/v1/models/{name}/import" => models::import;
    post "/v1/models/{name}/compress" => models::compress;
    get "/v1/models/{name}/versions/{id}" => models::version_manifest;
    get "/v1/openapi.json" => super::openapi::serve;
    post "/v1/datasets" => datasets::ingest;
    get "/v1/datasets" => datasets::list;
    post "/v1/datasets/{name:.+}/pipelines" => pipelines::fit;
    get "/v1/datasets/{name:.+}" => datasets::show;
    get "/v1/refs" => refs::list;
    get "/v1/refs/{name:.+}/history" => refs::history;
    post "/v1/refs/{name:.+}/rollback" => refs::rollback;
    get "/v1/refs/{name:.+}" => refs::get;
    put "/v1/refs/{name:.+}" => refs::set;
}
