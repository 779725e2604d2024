//! Per-service request policy applied around forwarding: who may pass (`access`: routes, auth,
//! roles), CORS, security headers, rate limits and the declared request body size.
//!
//! The handler asks, in order: [`Policy::allowed_origin`] (remembered for the response),
//! [`Policy::preflight`] (answered here, before authentication), [`Policy::admit`] (before
//! authentication), [`Policy::admit_identity`] (after it), and finally [`Policy::finish`] on
//! whatever response the request ended in, proxy errors included. A service that configures
//! none of it pays a few branches: nothing is allocated or formatted.
//!
//! Bodies that stream past `max_request_body`, the pause allowed between their chunks
//! (`limits.body_read_timeout`) and their minimum rate (`limits.min_body_rate`) are enforced by
//! the forwarder as it sends the body upstream, within the [`BodyLimits`] built here and timed
//! by a [`BodyClock`] (which the control plane uses for the bodies it reads too); which requests it may retry, and how many, is
//! [`retry`]'s to say.

pub(crate) mod access;
mod body_clock;
mod body_limits;
mod cors;
mod identity_headers;
mod rate;
pub(crate) mod retry;
mod security;

pub use access::{decide, AccessRules, Rule};
pub use body_clock::{BodyClock, SlowBody};
pub use body_limits::{BodyLimits, BodyPace};
pub use identity_headers::IdentityHeaders;
pub use retry::RetryBudget;

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;

use crate::auth::Identity;
use crate::config::{RateLimitKey, ServiceSettings};
use crate::error::{ProxyBody, ProxyError};
use cors::Cors;
use rate::{RateKey, RateLimit};
use security::SecurityHeaders;

/// A service's request policy, built once per config snapshot.
#[derive(Debug, Default)]
pub struct Policy {
    cors: Option<Cors>,
    security: Option<SecurityHeaders>,
    rate_limit: Option<RateLimit>,
    max_request_body: Option<u64>,
}

impl Policy {
    /// The policy of a validated service; `tls` says whether clients connect over TLS (HSTS is
    /// only sent then).
    pub fn from_settings(settings: &ServiceSettings, tls: bool) -> Self {
        Policy {
            cors: settings.cors.as_ref().map(Cors::new),
            security: settings.security_headers.then(|| SecurityHeaders::new(tls)),
            rate_limit: settings.rate_limit.as_ref().map(RateLimit::new),
            max_request_body: settings.max_request_body.map(|size| size.0),
        }
    }

    /// The largest request body the service accepts, if limited.
    pub fn max_request_body(&self) -> Option<u64> {
        self.max_request_body
    }

    /// Keeps state that should outlive a reload from `previous` (the same service's policy in
    /// the snapshot being replaced): rate-limit buckets, when the limit is unchanged.
    pub fn carry_over(&mut self, previous: &Policy) {
        if let (Some(limit), Some(old)) = (&mut self.rate_limit, &previous.rate_limit) {
            limit.carry_over(old);
        }
    }

    /// The `Access-Control-Allow-Origin` value this request's response gets: `None` when the
    /// service has no CORS policy, the request has no `Origin` or the origin is not allowed.
    pub(crate) fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        self.cors.as_ref()?.allowed_origin(headers)
    }

    /// The proxy's answer when `request` is a CORS preflight and the service has a CORS
    /// policy: 204 with the `Access-Control-Allow-*` headers, or `cors_forbidden`. Browsers
    /// send preflights without credentials, so this comes before authentication (and before
    /// rate limiting: a preflight costs no backend work).
    pub(crate) fn preflight<B>(
        &self,
        request: &Request<B>,
        origin: Option<&HeaderValue>,
    ) -> Option<Result<Response<ProxyBody>, ProxyError>> {
        let cors = self.cors.as_ref()?;
        cors::is_preflight(request).then(|| cors.preflight(request.headers(), origin))
    }

    /// Checks that need no identity: the rate limit when keyed by IP, and a declared body
    /// size (`Content-Length`) over `max_request_body`, refused before anything is sent.
    pub(crate) fn admit<B: Body>(
        &self,
        request: &Request<B>,
        ip: IpAddr,
    ) -> Result<(), ProxyError> {
        if let Some(limit) = &self.rate_limit {
            if limit.key() == RateLimitKey::Ip {
                limit.check(&RateKey::ip(ip))?;
            }
        }
        match self.max_request_body {
            Some(max) if request.body().size_hint().lower() > max => Err(too_large(max)),
            _ => Ok(()),
        }
    }

    /// The rate limit when keyed by user, checked after authentication with the account's id.
    /// On an `auth: none` service there is no identity, and the client's IP is the key instead.
    pub(crate) fn admit_identity(
        &self,
        identity: Option<&Identity>,
        ip: IpAddr,
    ) -> Result<(), ProxyError> {
        match &self.rate_limit {
            Some(limit) if limit.key() == RateLimitKey::User => match identity {
                Some(identity) => limit.check(&RateKey::account(&identity.claims.sub)),
                None => limit.check(&RateKey::ip(ip)),
            },
            _ => Ok(()),
        }
    }

    /// Adds the CORS headers for `origin` (the value [`Policy::allowed_origin`] gave) and the
    /// security headers to a response of this service, whether the backend or the proxy made it.
    pub(crate) fn finish(&self, headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
        if let Some(cors) = &self.cors {
            cors.tag(headers, origin);
        }
        if let Some(security) = &self.security {
            security.apply(headers);
        }
    }
}

fn too_large(max: u64) -> ProxyError {
    ProxyError::PayloadTooLarge(usize::try_from(max).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn service(extra: &str) -> ServiceSettings {
        let yaml =
            format!("name: s\nhosts: [s.test]\nbackends: [{{url: 'http://127.0.0.1:1'}}]\n{extra}");
        serde_yaml_ng::from_str(&yaml).expect("valid service")
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn an_empty_policy_leaves_responses_alone() {
        let policy = Policy::from_settings(&service(""), true);
        let mut headers = HeaderMap::new();
        policy.finish(&mut headers, None);
        assert!(headers.is_empty());
        let request = Request::new(Full::new(bytes::Bytes::from_static(b"x")));
        assert!(policy.admit(&request, IP).is_ok());
        assert!(policy.preflight(&request, None).is_none());
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused() {
        let policy = Policy::from_settings(&service("max_request_body: 4"), false);
        let small = Request::new(Full::new(bytes::Bytes::from_static(b"1234")));
        let large = Request::new(Full::new(bytes::Bytes::from_static(b"12345")));
        assert!(policy.admit(&small, IP).is_ok());
        assert_eq!(policy.admit(&large, IP).unwrap_err().status(), 413);
    }

    #[test]
    fn a_user_keyed_limit_falls_back_to_the_ip_without_identity() {
        let policy = Policy::from_settings(
            &service("rate_limit: {requests_per_second: 1, burst: 1, key: user}"),
            false,
        );
        let request = Request::new(Full::new(bytes::Bytes::new()));
        assert!(policy.admit(&request, IP).is_ok() && policy.admit(&request, IP).is_ok());
        assert!(policy.admit_identity(None, IP).is_ok());
        assert_eq!(policy.admit_identity(None, IP).unwrap_err().status(), 429);
    }
}
