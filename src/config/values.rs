//! Checked scalar types. Each one validates inside its serde visitor, so a failure carries the
//! line and column of the offending YAML node (serde_yaml_ng marks errors raised there).

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::rules;

/// What `load` tracks across the whole document while it is being deserialised.
///
/// Uniqueness spans services, but only a visitor knows the location of the node it is reading;
/// so the visitors consult this per-parse set instead of a later pass that would have lost it.
#[derive(Default)]
pub(crate) struct ParseScope {
    hosts: HashSet<String>,
    service_names: HashSet<String>,
}

thread_local! {
    static SCOPE: RefCell<Option<ParseScope>> = const { RefCell::new(None) };
}

/// Runs `parse` with a fresh [`ParseScope`]; the scope is gone afterwards, even on panic.
pub(crate) fn with_scope<T>(parse: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SCOPE.with(|s| s.borrow_mut().take());
        }
    }
    SCOPE.with(|s| *s.borrow_mut() = Some(ParseScope::default()));
    let _reset = Reset;
    parse()
}

fn in_scope(check: impl FnOnce(&mut ParseScope) -> Result<(), String>) -> Result<(), String> {
    SCOPE.with(|s| match s.borrow_mut().as_mut() {
        Some(scope) => check(scope),
        None => Ok(()),
    })
}

/// A visitor for values written as one YAML string, checked by `parse`.
struct StrVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

pub(super) fn deserialize_str<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    deserializer.deserialize_str(StrVisitor { expecting, parse })
}

/// A duration written `250ms`, `5s`, `15m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a duration like 250ms, 5s or 15m", |s| {
            rules::parse_duration(s).map(Dur)
        })
    }
}

/// An upstream address, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl(pub http::Uri);

impl BackendUrl {
    /// `host:port` of the backend, as used in upstream requests and metric labels.
    pub fn authority(&self) -> &http::uri::Authority {
        self.0
            .authority()
            .expect("checked by rules::check_backend_url")
    }
}

impl<'de> Deserialize<'de> for BackendUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a backend url like http://127.0.0.1:9001", |s| {
            rules::check_backend_url(s).map(BackendUrl)
        })
    }
}

/// A host name a service claims: lowercase, no port, unique across services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName(pub String);

impl<'de> Deserialize<'de> for HostName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a host name like service1.my-company.com", |s| {
            let host = rules::check_host(s)?;
            in_scope(|scope| rules::check_unique_host(&mut scope.hosts, &host))?;
            Ok(HostName(host))
        })
    }
}

/// The session cookie's `Domain`: a host name (not a claim: services may claim it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieDomain(pub String);

impl<'de> Deserialize<'de> for CookieDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a domain like my-company.com", |s| {
            rules::check_cookie_domain(s).map(CookieDomain)
        })
    }
}

/// A cookie name: an RFC 6265 token, not one Gatehouse uses for something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieName(pub String);

impl<'de> Deserialize<'de> for CookieName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a cookie name like gatehouse_session", |s| {
            rules::check_cookie_name(s).map(|()| CookieName(s.to_string()))
        })
    }
}

/// A service's name: a metrics label, unique, never `control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName(pub String);

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "a service name like service1", |s| {
            let name = rules::check_service_name(s)?;
            in_scope(|scope| rules::check_unique_service_name(&mut scope.service_names, &name))?;
            Ok(ServiceName(name))
        })
    }
}

/// A proxy address range whose forwarding headers are believed: `10.0.0.0/8` or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for ProxyNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(d, "an address range like 10.0.0.0/8, or an address", |s| {
            rules::check_proxy_net(s).map(ProxyNet)
        })
    }
}

/// A header name (or `prefix-*`) clients may never pass to a backend, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeader(pub String);

impl<'de> Deserialize<'de> for IdentityHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_str(
            d,
            "a header name like remote-user, or a prefix like x-gatehouse-*",
            |s| rules::check_identity_header(s).map(IdentityHeader),
        )
    }
}

/// A byte size written `512`, `64KiB`, `10MiB` or `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 512, 64KiB, 10MiB or 1GiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                rules::parse_size(&v.to_string())
                    .map(Size)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                rules::parse_size(&v.to_string())
                    .map(Size)
                    .map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                rules::parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A memory buffer's size: [`Size`]'s syntax, `0` for none, at most
/// [`rules::MAX_BUFFER_BYTES`] (it is held in memory per request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferSize(pub Option<u64>);

impl<'de> Deserialize<'de> for BufferSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BufferSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 64KiB or 1MiB, or 0 for none")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BufferSize, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BufferSize, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BufferSize, E> {
                rules::parse_buffer_size(v)
                    .map(BufferSize)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole number from `MIN` to `MAX` (counts and percentages in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u32, const MAX: u32>(pub u32);

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u32, const MAX: u32>;
        impl<const MIN: u32, const MAX: u32> Visitor<'_> for V<MIN, MAX> {
            type Value = Bounded<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number from {MIN} to {MAX}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                rules::check_range(v, MIN, MAX)
                    .map(Bounded)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let v = u64::try_from(v).unwrap_or(u64::MAX);
                rules::check_range(v, MIN, MAX)
                    .map(Bounded)
                    .map_err(E::custom)
            }
        }
        d.deserialize_u64(V::<MIN, MAX>)
    }
}

/// A backend's relative share of traffic, 1 to [`rules::MAX_WEIGHT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub u32);

impl Default for Weight {
    fn default() -> Self {
        Weight(1)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Weight;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number between 1 and 100")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Weight, E> {
                rules::check_weight(v).map(Weight).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Weight, E> {
                let v = u64::try_from(v).unwrap_or(0);
                rules::check_weight(v).map(Weight).map_err(E::custom)
            }
        }
        d.deserialize_u64(V)
    }
}

/// Worker threads: `auto` (one per CPU the process may use) or a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Workers {
    /// One per available CPU (respects affinity and cgroup CPU limits).
    #[default]
    Auto,
    /// Exactly this many.
    Count(usize),
}

impl Workers {
    /// The number of worker threads to run.
    pub fn resolve(self) -> usize {
        match self {
            Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Workers::Count(n) => n,
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`auto` or a number of worker threads")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Workers, E> {
                match v {
                    "auto" => Ok(Workers::Auto),
                    _ => Err(E::custom(format!(
                        "invalid workers `{v}`: write auto or a number"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Workers, E> {
                rules::check_workers(v)
                    .map(Workers::Count)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Workers, E> {
                self.visit_u64(u64::try_from(v).unwrap_or(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML sequence that must not be empty; the error points at the sequence itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty<T>(pub Vec<T>);

impl<T> std::ops::Deref for NonEmpty<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NonEmpty<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-empty list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                rules::check_not_empty(&items, "the list").map_err(de::Error::custom)?;
                Ok(NonEmpty(items))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}
