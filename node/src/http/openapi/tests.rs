use std::collections::BTreeSet;

use super::*;
use crate::http::routes::ROUTES;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// `{name:.+}` (an actix pattern with a regex) is `{name}` in OpenAPI.
fn normalise(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed brace") + open;
        let name = rest[open + 1..close].split(':').next().unwrap();
        out.push_str(&rest[..open]);
        out.push_str(&format!("{{{name}}}"));
        rest = &rest[close + 1..];
    }
    out + rest
}

fn documented() -> BTreeSet<(String, String)> {
    let document = serde_json::to_value(document()).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS.into_iter().filter(|m| item.get(*m).is_some()) {
            operations.insert((method.to_owned(), path.clone()));
        }
    }
    operations
}

#[test]
fn patterns_are_normalised() {
    assert_eq!(normalise("/v1/refs/{name:.+}/history"), "/v1/refs/{name}/history");
    assert_eq!(normalise("/v1/models/{name}/versions/{id}"), "/v1/models/{name}/versions/{id}");
    assert_eq!(normalise("/"), "/");
}

#[test]
fn every_route_is_documented_and_every_operation_routed() {
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, pattern)| (method.to_string(), normalise(pattern))).collect();
    assert_eq!(routed.len(), ROUTES.len(), "a route is registered twice");
    let documented = documented();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    assert!(unrouted.is_empty(), "documented operations no route serves: {unrouted:?}");
}

#[test]
fn every_path_parameter_is_declared() {
    let document = serde_json::to_value(document()).unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        let in_path: BTreeSet<&str> = path.split('{').skip(1).map(|rest| rest.split('}').next().unwrap()).collect();
        for method in METHODS.into_iter().filter(|m| item.get(*m).is_some()) {
            let declared: BTreeSet<&str> = item[method]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(declared, in_path, "{} {path}: path parameters", method.to_uppercase());
        }
    }
}

#[test]
fn operation_ids_are_unique() {
    let document = serde_json::to_value(document()).unwrap();
    let mut seen = BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for method in METHODS.into_iter().filter(|m| item.get(*m).is_some()) {
            let id = item[method]["operationId"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "operationId {id} is used twice");
        }
    }
}

#[test]
fn operations_name_the_role_the_server_asks_for() {
    let document = serde_json::to_value(document()).unwrap();
    let security = |method: &str, path: &str| document["paths"][path][method]["security"].clone();
    assert_eq!(security("get", "/v1/health"), serde_json::json!([]));
    assert_eq!(security("get", "/dashboard/{file}"), serde_json::json!([]));
    assert_eq!(security("post", "/v1/models/{name}/predict"), serde_json::json!([{ "token": ["predict"] }]));
    assert_eq!(security("get", "/v1/refs/{name}/history"), serde_json::json!([{ "token": ["read"] }]));
    assert_eq!(security("put", "/v1/refs/{name}"), serde_json::json!([{ "token": ["admin"] }]));
    assert_eq!(security("post", "/v1/jobs"), serde_json::json!([{ "token": ["write"] }]));
    assert!(document["paths"]["/v1/jobs"]["post"]["responses"]["401"].is_object());
    assert!(document["paths"]["/v1/health"]["get"]["responses"]["401"].is_null());
}

/// `docs/openapi.json` is what readers see without running a node: it must
/// be the generated document. `MASS_WRITE_OPENAPI=1` rewrites it.
#[test]
fn docs_openapi_json_is_the_generated_document() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let generated = format!("{}\n", JSON.as_str());
    if std::env::var_os("MASS_WRITE_OPENAPI").is_some() {
        std::fs::write(&file, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the handlers generate; regenerate it with\n    \
         MASS_WRITE_OPENAPI=1 cargo test -p mass-node --lib openapi"
    );
}
