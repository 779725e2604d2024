//! Who may pass, per route: the one decision the request path and `gatehouse explain` share.
//!
//! A service's routes are tried in order; the first whose path (a segment prefix of the
//! normalised path) and methods match decides, with whatever it does not set taken from the
//! service. No match: the service's own `auth` and `roles`.

use http::Method;

use crate::config::{route_covers, RouteSettings, ServiceAuth, ServiceSettings};
use crate::metrics::AccessResult;
use crate::store::Role;

/// One compiled route.
#[derive(Debug, Clone)]
struct Route {
    path: Box<str>,
    methods: Option<Box<[Method]>>,
    auth: ServiceAuth,
    roles: Option<Box<[Role]>>,
}

/// What applies to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    /// Index of the matched route, or `None` for the service's default.
    pub route: Option<usize>,
    /// Whether a signed-in caller is needed.
    pub auth: ServiceAuth,
    /// The roles allowed, when restricted.
    pub roles: Option<&'a [Role]>,
}

/// A service's access rules.
#[derive(Debug, Clone)]
pub struct AccessRules {
    routes: Box<[Route]>,
    auth: ServiceAuth,
    roles: Option<Box<[Role]>>,
}

impl AccessRules {
    /// The rules of a validated service.
    pub fn from_settings(settings: &ServiceSettings) -> Self {
        let service_roles = settings.roles.as_ref().map(|r| r.0.clone());
        let route = |r: &RouteSettings| {
            let auth = r.auth.unwrap_or(settings.auth);
            let roles = match auth {
                ServiceAuth::None => None,
                ServiceAuth::Required => r.roles.clone().or_else(|| service_roles.clone()),
            };
            Route {
                path: r.path.0.as_str().into(),
                methods: r.methods.as_ref().map(|methods| {
                    methods
                        .iter()
                        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                        .collect()
                }),
                auth,
                roles: roles.map(Into::into),
            }
        };
        AccessRules {
            routes: settings.routes.iter().map(route).collect(),
            auth: settings.auth,
            roles: service_roles.map(Into::into),
        }
    }

    /// Whether any route exists (then the path must be normalised before deciding).
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The rule for `method` on the normalised `path`.
    pub fn rule(&self, method: &Method, path: &str) -> Rule<'_> {
        let matched = self.routes.iter().enumerate().find(|(_, route)| {
            let method_matches = route
                .methods
                .as_deref()
                .is_none_or(|methods| methods.contains(method));
            method_matches && route_covers(&route.path, path)
        });
        match matched {
            Some((index, route)) => Rule {
                route: Some(index),
                auth: route.auth,
                roles: route.roles.as_deref(),
            },
            None => Rule {
                route: None,
                auth: self.auth,
                roles: match self.auth {
                    ServiceAuth::None => None,
                    ServiceAuth::Required => self.roles.as_deref(),
                },
            },
        }
    }
}

/// The decision for a caller under `rule`: `caller` is the signed-in caller's role (`None`:
/// anonymous), `navigation` whether the request is a browser opening a page (a `GET`/`HEAD`
/// accepting HTML), which is sent to sign in rather than refused.
pub fn decide(rule: &Rule<'_>, caller: Option<Role>, navigation: bool) -> AccessResult {
    match (rule.auth, caller) {
        (ServiceAuth::None, _) => AccessResult::Allow,
        (ServiceAuth::Required, None) if navigation => AccessResult::SignIn,
        (ServiceAuth::Required, None) => AccessResult::Deny401,
        (ServiceAuth::Required, Some(role)) => match rule.roles {
            Some(roles) if !roles.contains(&role) => AccessResult::Deny403,
            _ => AccessResult::Allow,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> AccessRules {
        let text = format!(
            "services:\n  - name: s\n    hosts: [s.test]\n    backends: [{{url: http://127.0.0.1:1}}]\n{yaml}"
        );
        let settings = crate::config::parse_str(&text, "test.yaml").expect("valid config");
        AccessRules::from_settings(&settings.services[0])
    }

    const ROUTES: &str = "    routes:
      - { path: /public, auth: none }
      - { path: /admin, roles: [admin] }
      - { path: /reports, methods: [POST, delete], roles: [admin] }
";

    #[test]
    fn the_first_matching_route_decides_and_the_service_is_the_default() {
        let rules = rules(ROUTES);
        let rule = |m: Method, p| rules.rule(&m, p).route;
        assert_eq!(rule(Method::GET, "/public/x"), Some(0));
        assert_eq!(rule(Method::GET, "/publication"), None);
        assert_eq!(rule(Method::GET, "/admin"), Some(1));
        assert_eq!(rule(Method::POST, "/reports/1"), Some(2));
        assert_eq!(rule(Method::DELETE, "/reports"), Some(2));
        assert_eq!(rule(Method::GET, "/reports"), None);
        assert_eq!(rules.rule(&Method::GET, "/").auth, ServiceAuth::Required);
    }

    #[test]
    fn decisions_follow_auth_roles_and_navigation() {
        let rules = rules(ROUTES);
        let admin_rule = rules.rule(&Method::GET, "/admin/x");
        assert_eq!(decide(&admin_rule, None, false), AccessResult::Deny401);
        assert_eq!(decide(&admin_rule, None, true), AccessResult::SignIn);
        assert_eq!(
            decide(&admin_rule, Some(Role::User), true),
            AccessResult::Deny403
        );
        assert_eq!(
            decide(&admin_rule, Some(Role::Admin), false),
            AccessResult::Allow
        );
        let public = rules.rule(&Method::POST, "/public");
        assert_eq!(decide(&public, None, false), AccessResult::Allow);
        let default = rules.rule(&Method::GET, "/home");
        assert_eq!(
            decide(&default, Some(Role::User), false),
            AccessResult::Allow
        );
    }

    #[test]
    fn a_route_keeps_the_service_roles_unless_it_sets_its_own() {
        let rules = rules(
            "    roles: [admin]
    routes:
      - { path: /open, auth: none }
      - { path: /shared, roles: [user, admin] }
      - { path: /strict, auth: required }
",
        );
        let roles = |p| rules.rule(&Method::GET, p).roles.map(<[Role]>::to_vec);
        assert_eq!(roles("/open"), None);
        assert_eq!(roles("/shared"), Some(vec![Role::User, Role::Admin]));
        assert_eq!(roles("/strict"), Some(vec![Role::Admin]));
        assert_eq!(roles("/else"), Some(vec![Role::Admin]));
    }
}
