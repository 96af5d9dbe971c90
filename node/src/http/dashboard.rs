//! The dashboard: one page, one script and one stylesheet, written by hand
//! and compiled into the binary. The files carry no data (the page's script
//! reads the `/v1` API with the token the user gives it), so they are served
//! to anyone, like `/v1/health`; nothing is fetched from elsewhere.

use actix_web::{HttpResponse, http::StatusCode, web};

use super::error;

/// The dashboard's files: name under `/dashboard/`, content type, bytes.
const FILES: [(&str, &str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8", include_str!("dashboard/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("dashboard/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("dashboard/style.css")),
];

/// Only this node's own files and API: no inline script, no other origin.
/// (The script sets styles through the DOM, which this allows.)
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(name: &str) -> Option<HttpResponse> {
    let (_, content_type, body) = FILES.iter().find(|(file, _, _)| *file == name)?;
    Some(
        HttpResponse::Ok()
            .content_type(*content_type)
            // A new binary may bring new files: the browser asks again each time.
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-content-type-options", "nosniff"))
            .insert_header(("content-security-policy", POLICY))
            .body(*body),
    )
}

/// `GET /`: the page.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "dashboard_index",
    tag = "dashboard",
    summary = "The dashboard page (no token needed: the page carries no data; its script reads this API with \
        the token the user gives it)",
    responses(
        (status = 200, description = "HTML", body = String, content_type = "text/html"),
    ),
)]
pub async fn index() -> HttpResponse {
    file("index.html").expect("the page is one of the files")
}

/// `GET /dashboard/{file}`: the page's script and stylesheet (and the page).
#[utoipa::path(
    get,
    path = "/dashboard/{file}",
    operation_id = "dashboard_asset",
    tag = "dashboard",
    summary = "The dashboard's files, built into the node (no token needed)",
    params(
        ("file" = String, Path, description = "One of: index.html, app.js, style.css."),
    ),
    responses(
        (status = 200, description = "The file, with its content type", content(
            (String = "text/html"),
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such file"),
    ),
)]
pub async fn asset(name: web::Path<String>) -> HttpResponse {
    file(&name).unwrap_or_else(|| error(StatusCode::NOT_FOUND, format!("no dashboard file '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = FILES[0].2;
        assert!(page.contains(r#"src="/dashboard/app.js""#) && page.contains(r#"href="/dashboard/style.css""#));
        for (name, _, body) in FILES {
            let body = body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{name} names another origin");
            assert!(!body.contains("innerHTML"), "{name} writes HTML from strings");
        }
        // No inline script or style attribute: the policy would block them.
        assert!(!page.contains("<script>") && !page.contains("style="));
    }

    #[test]
    fn the_openapi_document_names_every_file() {
        // The route table's check covers the paths; this covers the names.
        let document = serde_json::to_value(crate::http::openapi::document()).unwrap();
        let file = &document["paths"]["/dashboard/{file}"]["get"]["parameters"][0];
        let description = file["description"].as_str().unwrap();
        for (name, _, _) in FILES {
            assert!(description.contains(name), "{name} is not named in the document: {description}");
        }
    }
}
