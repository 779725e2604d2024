//! Cross-origin resource sharing (Fetch standard, "CORS protocol"): preflights are answered by
//! the proxy; responses to allowed origins are tagged so the browser lets scripts read them.
//!
//! A service with a `cors` policy owns its CORS headers: whatever `Access-Control-Allow-*` or
//! `-Expose-Headers` a backend sends is replaced (or removed, for origins not allowed), so a
//! backend cannot widen what the config allows.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::config::CorsSettings;
use crate::error::{full_body, ProxyBody, ProxyError};

const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
/// A preflight's answer depends on what it asks for, not only on its origin.
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

/// The headers a service's CORS policy may set; removed from answers to other origins.
const CORS_RESPONSE_HEADERS: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// A service's CORS policy with its response headers rendered once.
#[derive(Debug)]
pub(crate) struct Cors {
    /// `None` = any origin (`*`).
    origins: Option<Box<[HeaderValue]>>,
    /// `None` = any method (`*`): the requested one is echoed.
    methods: Option<Box<[Method]>>,
    allow_methods: HeaderValue,
    /// `None` = any header (`*`): the requested ones are echoed, which also works with
    /// credentials (where browsers read `*` literally).
    headers: Option<Box<[HeaderName]>>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

impl Cors {
    /// Renders a validated `cors` block (origins, methods and header names were checked).
    pub(crate) fn new(settings: &CorsSettings) -> Self {
        let any = |list: &[String]| list.iter().any(|item| item == "*");
        let origins = (!any(&settings.allowed_origins)).then(|| {
            settings
                .allowed_origins
                .iter()
                .filter_map(|o| value(o))
                .collect()
        });
        let methods = (!any(&settings.allowed_methods)).then(|| {
            let parse = |m: &String| Method::from_bytes(m.as_bytes()).ok();
            settings.allowed_methods.iter().filter_map(parse).collect()
        });
        let headers = (!any(&settings.allowed_headers)).then(|| {
            let parse = |h: &String| HeaderName::from_bytes(h.as_bytes()).ok();
            settings.allowed_headers.iter().filter_map(parse).collect()
        });
        Cors {
            origins,
            methods,
            allow_methods: joined(&settings.allowed_methods).unwrap_or(ANY),
            headers,
            allow_headers: joined(&settings.allowed_headers),
            expose_headers: joined(&settings.expose_headers),
            credentials: settings.allow_credentials,
            max_age: settings.max_age.map(|age| HeaderValue::from(age.as_secs())),
        }
    }

    /// The `Access-Control-Allow-Origin` value for the request's `Origin`, if it is allowed:
    /// the origin itself when origins are listed (or credentials are allowed), else `*`.
    pub(crate) fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        match &self.origins {
            None if !self.credentials => Some(ANY),
            None => Some(origin.clone()),
            Some(listed) => listed
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
                .then(|| origin.clone()),
        }
    }

    /// Answers a preflight: 204 with the allowed methods and headers, or `cors_forbidden` when
    /// the origin, the method or one of the headers it asks for is not allowed.
    pub(crate) fn preflight(
        &self,
        request: &HeaderMap,
        origin: Option<&HeaderValue>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let origin = origin.ok_or(ProxyError::CorsForbidden("this origin is not allowed"))?;
        let method = &request[header::ACCESS_CONTROL_REQUEST_METHOD];
        if !self.method_allowed(method) {
            return Err(ProxyError::CorsForbidden("this method is not allowed"));
        }
        let asked = request.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if !asked.iter().all(|list| self.headers_allowed(list)) {
            return Err(ProxyError::CorsForbidden(
                "a requested header is not allowed",
            ));
        }
        let mut response = Response::new(full_body(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        let methods = match self.methods {
            Some(_) => self.allow_methods.clone(),
            None => method.clone(),
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        self.add_allowed_headers(headers, request);
        if let Some(max_age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        headers.insert(header::VARY, PREFLIGHT_VARY);
        Ok(response)
    }

    /// Tags a response: CORS headers for an allowed `origin`, none (not even a backend's) for
    /// any other; `Vary: Origin` always, since the answer depends on it.
    pub(crate) fn tag(&self, headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
        add_vary_origin(headers);
        let Some(origin) = origin else {
            for name in CORS_RESPONSE_HEADERS {
                headers.remove(name);
            }
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        } else {
            headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        }
        match &self.expose_headers {
            Some(expose) => headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()),
            None => headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS),
        };
    }

    /// Method names are case-sensitive (browsers upper-case only the standard ones).
    fn method_allowed(&self, asked: &HeaderValue) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => methods
                .iter()
                .any(|m| m.as_str().as_bytes() == asked.as_bytes()),
        }
    }

    /// Whether every name in one `Access-Control-Request-Headers` list is allowed.
    fn headers_allowed(&self, asked: &HeaderValue) -> bool {
        let Some(allowed) = &self.headers else {
            return true;
        };
        let Ok(list) = asked.to_str() else {
            return false;
        };
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .all(|name| {
                allowed
                    .iter()
                    .any(|a| a.as_str().eq_ignore_ascii_case(name))
            })
    }

    fn add_allowed_headers(&self, headers: &mut HeaderMap, request: &HeaderMap) {
        if self.headers.is_some() {
            if let Some(allowed) = &self.allow_headers {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
            }
            return;
        }
        for asked in request.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.append(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
    }
}

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: a browser asking first.
pub(crate) fn is_preflight<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.method() == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Appends `Origin` to `Vary` unless it (or `*`) is already there.
fn add_vary_origin(headers: &mut HeaderMap) {
    let varies = headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|name| name == "*" || name.eq_ignore_ascii_case("origin"))
        })
    });
    if !varies {
        headers.append(header::VARY, ORIGIN);
    }
}

fn value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// `a, b, c`, or `None` for an empty list.
fn joined(items: &[String]) -> Option<HeaderValue> {
    (!items.is_empty())
        .then(|| value(&items.join(", ")))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        Cors::new(&serde_yaml_ng::from_str(yaml).expect("valid cors"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const APP: &str = "https://app.test";

    #[test]
    fn a_listed_origin_is_echoed_and_others_get_nothing() {
        let cors = cors("{allowed_origins: ['https://app.test']}");
        let allowed = cors.allowed_origin(&headers(&[("origin", APP)]));
        assert_eq!(allowed.unwrap(), APP);
        assert!(cors
            .allowed_origin(&headers(&[("origin", "https://evil.test")]))
            .is_none());
        assert!(cors.allowed_origin(&HeaderMap::new()).is_none());
    }

    #[test]
    fn any_origin_without_credentials_answers_star() {
        let cors = cors("{allowed_origins: ['*']}");
        assert_eq!(
            cors.allowed_origin(&headers(&[("origin", APP)])).unwrap(),
            "*"
        );
    }

    #[test]
    fn preflight_rejects_unlisted_methods_and_headers() {
        let cors =
            cors("{allowed_origins: ['*'], allowed_methods: [GET, PUT], allowed_headers: [x-a]}");
        let origin = Some(&ANY);
        let ask = |method, hdrs| {
            let request = headers(&[
                ("access-control-request-method", method),
                ("access-control-request-headers", hdrs),
            ]);
            cors.preflight(&request, origin)
                .map(|r| r.status())
                .map_err(|e| e.code())
        };
        assert_eq!(ask("PUT", "X-A"), Ok(StatusCode::NO_CONTENT));
        assert_eq!(ask("DELETE", "x-a"), Err("cors_forbidden"));
        assert_eq!(ask("PUT", "x-a, x-b"), Err("cors_forbidden"));
        assert_eq!(ask("put", ""), Err("cors_forbidden"));
    }

    #[test]
    fn star_headers_echo_what_the_preflight_asks_for() {
        let cors = cors("{allowed_origins: ['https://app.test'], allowed_headers: ['*'], allow_credentials: true}");
        let origin = HeaderValue::from_static(APP);
        let request = headers(&[
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-one, x-two"),
        ]);
        let response = cors.preflight(&request, Some(&origin)).unwrap();
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "x-one, x-two"
        );
    }

    #[test]
    fn tagging_replaces_backend_cors_headers_and_keeps_its_vary() {
        let cors = cors("{allowed_origins: ['https://app.test'], expose_headers: [x-total]}");
        let mut response = headers(&[
            ("vary", "Accept-Encoding"),
            ("access-control-allow-origin", "*"),
        ]);
        cors.tag(&mut response, Some(&HeaderValue::from_static(APP)));
        assert_eq!(response[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(response[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-total");
        let vary: Vec<_> = response.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        cors.tag(&mut response, None);
        assert!(!response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(response.get_all(header::VARY).iter().count(), 2);
    }
}
