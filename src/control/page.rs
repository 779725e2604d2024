//! `GET /accounts_page`: one self-contained HTML page (`accounts_page.html`: inline CSS and JS,
//! nothing loaded from elsewhere, so it works on offline machines) that logs in and shows
//! `/accounts` as a searchable, paged table, and to an admin the audit trail (`/audit`) below
//! it. Every value from the server is set as text, never as HTML.
//!
//! Its headers lock it down: the Content-Security-Policy allows the inline script and style only
//! by their SHA-256 hashes, computed once from the asset itself, so editing the page can never
//! leave a stale hash behind (a stale hash would silently disable the script).

use std::sync::LazyLock;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::{general_purpose::STANDARD, Engine};
use bytes::Bytes;
use http::{header, HeaderValue, Response};

use crate::error::{full_body, ProxyBody};

/// The page, served as is.
const PAGE: &str = include_str!("accounts_page.html");

static CSP: LazyLock<HeaderValue> = LazyLock::new(|| content_security_policy(PAGE));

/// The accounts page with its security headers (`HEAD` gets the same; hyper drops the body).
pub(super) fn accounts_page() -> Response<ProxyBody> {
    let mut response = Response::new(full_body(Bytes::from_static(PAGE.as_bytes())));
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    response
}

/// Nothing but the page's own script and style, `fetch` to this origin, and no framing.
fn content_security_policy(page: &str) -> HeaderValue {
    let script = hash_source(inline(page, "script"));
    let style = hash_source(inline(page, "style"));
    let policy = format!(
        "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
}

/// The text between `<tag>` and `</tag>`, exactly as the browser hashes it.
fn inline<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let end = start + page[start..].find(&format!("</{tag}>"))?;
    Some(&page[start..end])
}

/// `'sha256-…'` for inline text; `'none'` when there is none (fail closed, never open).
fn hash_source(text: Option<&str>) -> String {
    match text {
        Some(text) => format!(
            "'sha256-{}'",
            STANDARD.encode(digest(&SHA256, text.as_bytes()))
        ),
        None => "'none'".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response<ProxyBody>, name: &str) -> &'a str {
        response.headers()[name].to_str().unwrap()
    }

    #[test]
    fn the_csp_allows_exactly_the_script_and_style_in_the_page() {
        // Cut the inline blocks out independently of `inline`, the way a reader would.
        let script = PAGE
            .split("<script>")
            .nth(1)
            .unwrap()
            .split("</script>")
            .next();
        let style = PAGE
            .split("<style>")
            .nth(1)
            .unwrap()
            .split("</style>")
            .next();
        let sha = |text: &str| STANDARD.encode(digest(&SHA256, text.as_bytes()));
        let csp = CSP.to_str().unwrap();
        let script_src = format!("script-src 'sha256-{}';", sha(script.unwrap()));
        let style_src = format!("style-src 'sha256-{}';", sha(style.unwrap()));
        assert!(csp.contains(&script_src), "{csp}");
        assert!(csp.contains(&style_src), "{csp}");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn the_page_has_one_inline_script_and_style_and_loads_nothing_else() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        for external in ["://", " src=", " href=", "@import", "url("] {
            assert!(!PAGE.contains(external), "the page refers to `{external}`");
        }
    }

    #[test]
    fn the_page_never_parses_data_as_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(sink), "the page uses `{sink}`");
        }
        // Style attributes and inline handlers would be blocked by the CSP anyway.
        for attribute in [
            " style=",
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
        ] {
            assert!(!PAGE.contains(attribute), "the page uses `{attribute}`");
        }
    }

    #[test]
    fn the_page_is_sent_with_its_security_headers() {
        let response = accounts_page();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8"
        );
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert_eq!(
            header(&response, "content-security-policy"),
            CSP.to_str().unwrap()
        );
    }

    #[test]
    fn a_page_without_an_inline_block_gets_none_rather_than_no_policy() {
        let csp = content_security_policy("<p>no script</p>");
        let csp = csp.to_str().unwrap();
        assert!(csp.contains("script-src 'none';"), "{csp}");
        assert!(csp.contains("style-src 'none';"), "{csp}");
    }
}
