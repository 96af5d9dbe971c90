//! Who may call which route: every route needs a role, checked against the
//! caller's `Authorization: Bearer` token before the handler runs. Only the
//! health check (liveness probes carry no token) and the dashboard's static
//! files (they carry no data; the page reads the API with the user's token)
//! are public.

use actix_web::{
    HttpResponse,
    body::EitherBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode},
};
use mass_protocol::api::Role;

use crate::auth::{Tokens, Verdict};

/// The role a route needs; `None`: public.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "health"]) => None,
        (&Method::GET | &Method::HEAD, [""] | ["dashboard", _]) => None,
        (&Method::POST, ["v1", "models", _, "predict"]) => Some(Role::Predict),
        // Destroying, or writing below the registry's checks.
        (&Method::DELETE, ["v1", "blobs", ..]) | (&Method::POST, ["v1", "gc"]) => Some(Role::Admin),
        (&Method::PUT, ["v1", "refs", ..]) | (&Method::POST, ["v1", "refs", ..]) => Some(Role::Admin),
        // Draining takes the node out of the mesh.
        (&Method::POST, ["v1", "node", "drain"]) => Some(Role::Admin),
        (&Method::GET | &Method::HEAD, _) => Some(Role::Read),
        _ => Some(Role::Write),
    }
}

/// The refusal for a request, if any.
pub fn refusal(tokens: &Tokens, method: &Method, path: &str, header: Option<&str>) -> Option<(StatusCode, String)> {
    let needed = required_role(method, path)?;
    match tokens.verify(header) {
        Verdict::Open => None,
        Verdict::Valid { role, .. } if role >= needed => None,
        Verdict::Valid { id, role } => {
            Some((StatusCode::FORBIDDEN, format!("token '{id}' has the {role} role; {method} {path} needs {needed}")))
        }
        Verdict::Missing => Some((
            StatusCode::UNAUTHORIZED,
            format!(
                "this node requires an API token: send 'Authorization: Bearer <token>' ({method} {path} needs {needed}; \
                 an operator creates one with `mass token create --role {needed}`)"
            ),
        )),
        Verdict::Unknown => Some((StatusCode::UNAUTHORIZED, "the API token is not known to this node".into())),
    }
}

/// Answers a refused request without running its handler.
pub fn refuse<B>(request: ServiceRequest, status: StatusCode, message: String) -> ServiceResponse<EitherBody<B>> {
    let response = HttpResponse::build(status).json(mass_protocol::api::ErrorBody { error: message });
    request.into_response(response).map_into_right_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_the_role_its_effect_calls_for() {
        let cases = [
            (Method::GET, "/v1/health", None),
            (Method::GET, "/", None),
            (Method::GET, "/dashboard/app.js", None),
            (Method::POST, "/", Some(Role::Write)),
            (Method::GET, "/dashboard/x/y", Some(Role::Read)),
            (Method::GET, "/v1/models", Some(Role::Read)),
            (Method::GET, "/metrics", Some(Role::Read)),
            (Method::POST, "/v1/models/digits/predict", Some(Role::Predict)),
            (Method::POST, "/v1/models/digits/promote", Some(Role::Write)),
            (Method::GET, "/v1/models/digits/export", Some(Role::Read)),
            (Method::POST, "/v1/models/digits/import", Some(Role::Write)),
            (Method::POST, "/v1/jobs", Some(Role::Write)),
            (Method::PUT, "/v1/blobs", Some(Role::Write)),
            (Method::DELETE, "/v1/blobs/abc", Some(Role::Admin)),
            (Method::POST, "/v1/gc", Some(Role::Admin)),
            (Method::POST, "/v1/node/drain", Some(Role::Admin)),
            (Method::GET, "/v1/node/drain", Some(Role::Read)),
            (Method::PUT, "/v1/refs/model/x", Some(Role::Admin)),
            (Method::POST, "/v1/refs/model/x/rollback", Some(Role::Admin)),
            (Method::POST, "/v1/unknown", Some(Role::Write)),
        ];
        for (method, path, role) in cases {
            assert_eq!(required_role(&method, path), role, "{method} {path}");
        }
    }

    #[test]
    fn refusals_name_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (token, _) = crate::auth::create(dir.path(), Role::Predict, "app").unwrap();
        let tokens = Tokens::load(dir.path()).unwrap();
        let bearer = format!("Bearer {token}");
        let (status, message) = refusal(&tokens, &Method::POST, "/v1/jobs", None).unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("needs write"), "{message}");
        assert!(refusal(&tokens, &Method::POST, "/v1/models/x/predict", Some(&bearer)).is_none());
        let (status, message) = refusal(&tokens, &Method::POST, "/v1/models/x/promote", Some(&bearer)).unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(message.contains("has the predict role") && message.contains("needs write"), "{message}");
        assert!(refusal(&tokens, &Method::GET, "/v1/health", None).is_none());
    }
}
