//! `services[].routes[]`: access rules per path prefix and method, first match wins.
//!
//! A route's `path` is a segment prefix (`/admin` covers `/admin`, `/admin/…` and `/admin;…`,
//! never `/administrator`), written as the normalised path it is matched against: a leading
//! `/`, no empty, `.` or `..` segments, no `%`, `\`, `?`, `#`, controls or spaces. A route
//! overrides only what it sets: an unset `auth` or `roles` is the service's.

use serde::{Deserialize, Deserializer};

use super::schema::ServiceAuth;
use super::values::{deserialize_str, NonEmpty};
use crate::store::Role;

/// One access rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRoute")]
pub struct RouteSettings {
    /// The segment prefix it covers.
    pub path: RoutePath,
    /// Methods it applies to (upper case); `None`: every method.
    pub methods: Option<Vec<String>>,
    /// Overrides the service's `auth`.
    pub auth: Option<ServiceAuth>,
    /// Overrides the service's `roles`.
    pub roles: Option<Vec<Role>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: RoutePath,
    #[serde(default)]
    methods: Option<NonEmpty<RouteMethod>>,
    #[serde(default)]
    auth: Option<ServiceAuth>,
    #[serde(default)]
    roles: Option<NonEmpty<Role>>,
}

impl TryFrom<RawRoute> for RouteSettings {
    type Error = String;
    fn try_from(raw: RawRoute) -> Result<Self, String> {
        if raw.auth.is_none() && raw.roles.is_none() {
            return Err(format!(
                "the route for {} sets neither `auth` nor `roles`, so it would change nothing",
                raw.path.0
            ));
        }
        if raw.auth == Some(ServiceAuth::None) && raw.roles.is_some() {
            return Err(format!(
                "the route for {} has `roles` with `auth: none`: roles need a signed-in caller",
                raw.path.0
            ));
        }
        Ok(RouteSettings {
            path: raw.path,
            methods: raw.methods.map(|m| m.0.into_iter().map(|m| m.0).collect()),
            auth: raw.auth,
            roles: raw.roles.map(|r| r.0),
        })
    }
}

impl RouteSettings {
    /// Whether every request this route matches is matched by `earlier` first.
    pub fn covered_by(&self, earlier: &RouteSettings) -> bool {
        let methods_covered = match (&earlier.methods, &self.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(earlier), Some(mine)) => mine.iter().all(|m| earlier.contains(m)),
        };
        methods_covered && covers(&earlier.path.0, &self.path.0)
    }
}

/// Whether the segment prefix `prefix` covers `path`: equal, or followed by `/` or `;` (a
/// path parameter, which servlet containers strip before matching).
pub fn covers(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with(';'),
        None => false,
    }
}

/// A route's path, checked to be a normalised absolute path; a trailing `/` is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath(pub String);

impl<'de> Deserialize<'de> for RoutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a path like /admin", |s| {
            check_route_path(s).map(RoutePath)
        })
    }
}

fn check_route_path(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("a route path must not be empty: write / for everything".into());
    }
    if !text.starts_with('/') {
        return Err(format!("route path {text:?} must start with /"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| matches!(c, '%' | '\\' | '?' | '#') || c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "route path {text:?} must be written decoded and without {bad:?}: requests are \
             matched on their normalised, decoded path"
        ));
    }
    let trimmed = if text.len() > 1 {
        text.trim_end_matches('/')
    } else {
        text
    };
    if trimmed.len() > 1
        && trimmed[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "route path {text:?} has an empty, `.` or `..` segment; no normalised request path does"
        ));
    }
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
}

/// An HTTP method token, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteMethod(String);

impl<'de> Deserialize<'de> for RouteMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "an HTTP method like GET", |s| {
            let valid = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
            if valid {
                Ok(RouteMethod(s.to_ascii_uppercase()))
            } else {
                Err(format!("{s:?} is not an HTTP method"))
            }
        })
    }
}

/// The first route that an earlier one covers entirely: `(its index, the earlier's index)`.
pub fn first_unreachable(routes: &[RouteSettings]) -> Option<(usize, usize)> {
    routes.iter().enumerate().find_map(|(later, route)| {
        routes[..later]
            .iter()
            .position(|earlier| route.covered_by(earlier))
            .map(|earlier| (later, earlier))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: Option<&[&str]>) -> RouteSettings {
        RouteSettings {
            path: RoutePath(path.into()),
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            auth: Some(ServiceAuth::Required),
            roles: None,
        }
    }

    #[test]
    fn a_prefix_covers_whole_segments_only() {
        assert!(covers("/admin", "/admin"));
        assert!(covers("/admin", "/admin/users"));
        assert!(covers("/admin", "/admin;jsessionid=1"));
        assert!(!covers("/admin", "/administrator"));
        assert!(!covers("/admin", "/"));
        assert!(covers("/", "/anything"));
    }

    #[test]
    fn route_paths_are_normalised_absolute_paths() {
        assert_eq!(check_route_path("/admin/").unwrap(), "/admin");
        assert_eq!(check_route_path("/").unwrap(), "/");
        assert_eq!(check_route_path("///").unwrap(), "/");
        for bad in [
            "", "admin", "/a/../b", "/a/./b", "/a//b", "/%61", "/a\\b", "/a?x", "/a b",
        ] {
            assert!(check_route_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_earlier_route_covering_path_and_methods_makes_a_later_one_unreachable() {
        let admin_any = route("/admin", None);
        let admin_users_get = route("/admin/users", Some(&["GET"]));
        let admin_post = route("/admin", Some(&["POST"]));
        assert!(admin_users_get.covered_by(&admin_any));
        assert!(!admin_any.covered_by(&admin_users_get));
        assert!(!route("/admin/users", None).covered_by(&admin_post));
        assert!(route("/admin/x", Some(&["POST"])).covered_by(&admin_post));
        assert!(!route("/administrator", None).covered_by(&admin_any));
        assert_eq!(
            first_unreachable(&[route("/public", None), admin_any.clone(), admin_users_get]),
            Some((2, 1))
        );
        assert_eq!(
            first_unreachable(&[route("/admin/users", None), admin_any]),
            None
        );
    }
}
