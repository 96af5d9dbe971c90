//! Who may call each operation, written into the document from the same
//! function the server checks requests with (`auth::required_role`), so the
//! document cannot claim a role the node does not ask for.

use actix_web::http::Method;
use utoipa::openapi::{
    ContentBuilder, OpenApi, Ref, ResponseBuilder, SecurityRequirement,
    path::Operation,
    security::{Http, HttpAuthScheme, SecurityScheme},
};

use crate::http::auth::required_role;

/// The name of the bearer-token scheme in the document.
const SCHEME: &str = "token";

/// Adds the token scheme, each operation's role, and the refusals of a
/// missing or weak token.
pub fn add(document: &mut OpenApi) {
    let mut scheme = Http::new(HttpAuthScheme::Bearer);
    scheme.description = Some(
        "An API token (`mass token create --role ROLE`), sent as `Authorization: Bearer <token>`. A node \
         started without tokens answers everyone. Roles include the ones before them: read, predict, write, \
         admin; each operation's security requirement names the role it needs."
            .into(),
    );
    document.components.get_or_insert_with(Default::default).add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
    for (path, item) in document.paths.paths.iter_mut() {
        // Any segment stands for a path parameter: the roles go by position.
        let example = concrete(path);
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                require(operation, &method, &example);
            }
        }
    }
}

/// `/v1/refs/{name}/history` as a request path: `/v1/refs/x/history`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| if segment.starts_with('{') { "x" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

fn require(operation: &mut Operation, method: &Method, path: &str) {
    let Some(role) = required_role(method, path) else {
        // Public: an empty requirement list.
        operation.security = Some(Vec::new());
        return;
    };
    operation.security = Some(vec![SecurityRequirement::new(SCHEME, [role.to_string()])]);
    let refusals = [
        ("401", "no token, or one this node does not know (when the node has tokens)"),
        ("403", "the token's role is below the one this operation needs"),
    ];
    for (status, description) in refusals {
        let error = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        let response = ResponseBuilder::new().description(description).content("application/json", error).build();
        operation.responses.responses.insert(status.into(), response.into());
    }
}
