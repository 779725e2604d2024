//! The `date` field's value (RFC 9110 §6.6.1, IMF-fixdate), formatted once a second per worker
//! thread rather than per response, as hyper caches it.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`
const LENGTH: usize = 29;

thread_local! {
    static CACHED: RefCell<(u64, [u8; LENGTH])> = const { RefCell::new((u64::MAX, [0; LENGTH])) };
}

/// Appends the current date to `dst`.
pub(super) fn extend(dst: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            let formatted = httpdate::fmt_http_date(now);
            if let Ok(formatted) = <[u8; LENGTH]>::try_from(formatted.as_bytes()) {
                *text = formatted;
                *cached = second;
            }
        }
        dst.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut out = Vec::new();
        extend(&mut out);
        let text = std::str::from_utf8(&out).expect("ASCII");
        assert_eq!(text.len(), LENGTH);
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).expect("an HTTP date");
        let off = SystemTime::now()
            .duration_since(parsed)
            .expect("not in the future");
        assert!(off.as_secs() <= 2, "{text}");
    }
}
