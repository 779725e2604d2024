//! The sign-in page (`signin.html`): a form that works without JavaScript, rendered per request
//! with every value HTML-escaped, and sent with the accounts page's lock-down headers (but
//! `Referrer-Policy: same-origin`, see `render`). Its CSP
//! allows no script at all, the inline style only by its SHA-256 hash (computed from the asset,
//! so it cannot go stale), and forms posting only to this origin, plus the origin of an
//! absolute `rd` (Chromium applies `form-action` to the redirect that follows the post).

use std::sync::LazyLock;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::{general_purpose::STANDARD, Engine};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::error::{full_body, ProxyBody};

/// The page around `{{content}}`.
const PAGE: &str = include_str!("signin.html");

/// `'sha256-…'` of the page's inline style (`'none'` if it had none: fail closed).
static STYLE_SOURCE: LazyLock<String> = LazyLock::new(|| {
    let style = PAGE
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style);
    match style {
        Some(style) => format!(
            "'sha256-{}'",
            STANDARD.encode(digest(&SHA256, style.as_bytes()))
        ),
        None => "'none'".to_string(),
    }
});

/// The form. `{{…}}` fields are replaced by escaped values.
const FORM: &str = r#"<form class="card" method="post" action="/.gatehouse/signin">
  <h1>Sign in</h1>
  <p class="hint">Sign in to continue.</p>
  <input type="hidden" name="csrf" value="{{csrf}}">
  <input type="hidden" name="rd" value="{{rd}}">
  <label for="email">Email</label>
  <input id="email" name="email" type="email" autocomplete="username" required autofocus value="{{email}}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button id="signin" class="primary" type="submit">Sign in</button>
  {{message}}
</form>"#;

/// For a browser that is signed in already: continue, or sign out.
const SIGNED_IN: &str = r#"<div class="card">
  <h1>Signed in</h1>
  <p class="hint">as <strong id="username">{{username}}</strong> ({{email}})</p>
  <a id="continue" class="button primary" href="{{rd}}">Continue</a>
  <form class="signout" method="post" action="/.gatehouse/signout">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button id="signout" type="submit">Sign out</button>
  </form>
</div>"#;

/// What the page shows.
pub(super) enum View<'a> {
    /// The form, with the email typed before and a message after a refusal.
    Form {
        email: &'a str,
        message: Option<&'a str>,
    },
    /// The browser's session is valid.
    SignedIn { username: &'a str, email: &'a str },
}

/// The page, answered with `status`. `rd` is where signing in leads (already checked by
/// `redirect::safe`); `csrf` the token of the form's hidden field.
pub(super) fn render(
    status: StatusCode,
    view: &View<'_>,
    rd: &str,
    csrf: &str,
) -> Response<ProxyBody> {
    let content = match view {
        View::Form { email, message } => {
            let message = message.map_or(String::new(), |m| {
                format!(
                    r#"<p id="message" class="error" role="alert">{}</p>"#,
                    escape(m)
                )
            });
            fill(
                FORM,
                &[
                    ("csrf", &escape(csrf)),
                    ("rd", &escape(rd)),
                    ("email", &escape(email)),
                    ("message", &message),
                ],
            )
        }
        View::SignedIn { username, email } => fill(
            SIGNED_IN,
            &[
                ("username", &escape(username)),
                ("email", &escape(email)),
                ("rd", &escape(rd)),
                ("csrf", &escape(csrf)),
            ],
        ),
    };
    let html = PAGE.replace("{{content}}", &content);
    let mut response = Response::new(full_body(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer` as on the accounts page: under it browsers send `Origin: null` with
        // the form's post, which the CSRF check must refuse. `same-origin` still keeps the URL
        // (its `rd`) from every other site.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        content_security_policy(super::redirect::origin_of(rd)),
    );
    response
}

/// No script, the page's own style, forms to this origin (and `rd_origin`), no framing.
fn content_security_policy(rd_origin: Option<&str>) -> HeaderValue {
    let style = &*STYLE_SOURCE;
    let also = rd_origin.map_or(String::new(), |origin| format!(" {origin}"));
    let policy = format!(
        "default-src 'none'; script-src 'none'; style-src {style}; base-uri 'none'; \
         form-action 'self'{also}; frame-ancestors 'none'"
    );
    // An origin from `redirect::safe` is letters, digits, `.-:/` only; fail closed regardless.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
}

/// `template` with each `{{name}}` replaced by its (already escaped) value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

/// Text made safe for HTML text and double- or single-quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn html(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn escaping_covers_text_and_both_attribute_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain /path?x=1"), "plain /path?x=1");
    }

    #[tokio::test]
    async fn every_value_on_the_page_is_escaped() {
        let evil = r#""><script>alert(1)</script>"#;
        let view = View::Form {
            email: evil,
            message: Some(evil),
        };
        let page = html(render(StatusCode::UNAUTHORIZED, &view, evil, evil)).await;
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("{{"), "a field was left unfilled: {page}");
        assert_eq!(page.matches("&lt;script&gt;").count(), 4, "{page}");
        let view = View::SignedIn {
            username: evil,
            email: evil,
        };
        let page = html(render(StatusCode::OK, &view, evil, evil)).await;
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("{{"), "a field was left unfilled: {page}");
    }

    #[test]
    fn the_page_has_no_script_one_inline_style_and_loads_nothing() {
        for page in [PAGE, FORM, SIGNED_IN] {
            assert!(!page.contains("<script"), "{page}");
            for external in [
                "://",
                " src=",
                "@import",
                "url(",
                " style=",
                " onclick=",
                " onload=",
                " onerror=",
            ] {
                assert!(!page.contains(external), "the page uses `{external}`");
            }
        }
        assert_eq!(PAGE.matches("<style>").count(), 1);
    }

    #[test]
    fn the_csp_allows_exactly_the_inline_style_and_no_script() {
        let style = PAGE
            .split("<style>")
            .nth(1)
            .unwrap()
            .split("</style>")
            .next()
            .unwrap();
        let sha = STANDARD.encode(digest(&SHA256, style.as_bytes()));
        let csp = content_security_policy(None);
        let csp = csp.to_str().unwrap();
        assert_eq!(
            csp,
            format!(
                "default-src 'none'; script-src 'none'; style-src 'sha256-{sha}'; \
                 base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
            )
        );
        let csp = content_security_policy(Some("https://b.my-company.com:8443"));
        assert!(csp
            .to_str()
            .unwrap()
            .contains("form-action 'self' https://b.my-company.com:8443;"));
    }

    #[tokio::test]
    async fn the_page_is_sent_with_the_accounts_page_headers() {
        let view = View::Form {
            email: "",
            message: None,
        };
        let response = render(StatusCode::OK, &view, "/", "t");
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("content-type"), "text/html; charset=utf-8");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "same-origin");
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("cache-control"), "no-store");
        assert!(header("content-security-policy").starts_with("default-src 'none';"));
    }
}
