//! Email addresses as identifiers, following the PRECIS idea (RFC 8264/8265): one spelling per
//! address for uniqueness, lookups and what backends receive, and no characters that make two
//! different addresses look alike.
//!
//! - [`normalize`] is the stored and forwarded form: Unicode NFKC, so compatibility look-alikes
//!   become their plain letters (`K` KELVIN SIGN → `K`, full-width `ａ` → `a`).
//! - [`key`] is the uniqueness and lookup key: NFKC, then lower case (RFC 8265 §3.3.2 maps case
//!   with `toLowerCase`, not full case folding: `ß` and `ss` stay different addresses), then NFKC
//!   again because lowering can leave a string unnormalised.
//! - [`refused_char`] finds what an identifier must never contain: controls, format characters
//!   (zero-width spaces and joiners, bidi overrides and isolates, the BOM, the soft hyphen),
//!   separators (every kind of space), private-use and unassigned code points, and the default
//!   ignorable code points that are not format characters (variation selectors, Hangul fillers).

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The stored and forwarded form of an email: NFKC.
pub fn normalize(email: &str) -> String {
    email.nfkc().collect()
}

/// The uniqueness and lookup key of an email: NFKC, lower case, NFKC.
pub fn key(email: &str) -> String {
    let lowered: String = email.nfkc().flat_map(char::to_lowercase).collect();
    lowered.nfkc().collect()
}

/// The first character an identifier may not hold, in `value` as given or once normalised.
pub fn refused_char(value: &str) -> Option<char> {
    value.chars().chain(value.nfkc()).find(|&c| refused(c))
}

fn refused(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Other | GeneralCategoryGroup::Separator
    ) || invisible_mark_or_filler(c)
}

/// Default ignorable code points (Unicode `DerivedCoreProperties.txt`) outside the `Cf`
/// category: they render as nothing, so they would let two addresses look identical.
fn invisible_mark_or_filler(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'                      // COMBINING GRAPHEME JOINER
        | '\u{115F}'..='\u{1160}'       // HANGUL CHOSEONG/JUNGSEONG FILLER
        | '\u{17B4}'..='\u{17B5}'       // KHMER VOWEL INHERENT AQ/AA
        | '\u{180B}'..='\u{180F}'       // MONGOLIAN FREE VARIATION SELECTORS
        | '\u{3164}'                    // HANGUL FILLER
        | '\u{FE00}'..='\u{FE0F}'       // VARIATION SELECTORS
        | '\u{FFA0}'                    // HALFWIDTH HANGUL FILLER
        | '\u{E0100}'..='\u{E01EF}' // VARIATION SELECTORS SUPPLEMENT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_look_alikes_become_plain_letters() {
        assert_eq!(normalize("\u{212A}ate@example.com"), "Kate@example.com");
        assert_eq!(key("\u{212A}ate@example.com"), "kate@example.com");
        assert_eq!(key("ｋａｔｅ@ｅｘａｍｐｌｅ.com"), "kate@example.com");
        assert_eq!(key("KATE@Example.COM"), "kate@example.com");
        assert_eq!(
            normalize("Kate@Example.com"),
            "Kate@Example.com",
            "case is kept"
        );
    }

    #[test]
    fn composed_and_decomposed_accents_share_a_key() {
        assert_eq!(
            key("Jose\u{0301}@example.com"),
            key("jos\u{00E9}@example.com")
        );
        assert_eq!(normalize("e\u{0301}@x.org"), "\u{00E9}@x.org");
    }

    #[test]
    fn lower_case_follows_rfc_8265_not_full_folding() {
        assert_eq!(key("STRASSE@x.de"), "strasse@x.de");
        assert_eq!(key("Straße@x.de"), "straße@x.de");
        assert_eq!(key("ΣΊΣΥΦΟΣ@x.gr"), key("σίσυφοσ@x.gr"));
    }

    #[test]
    fn keys_are_stable_under_a_second_pass() {
        for email in [
            "\u{212A}ate@x.com",
            "Ǆ@x.com",
            "İstanbul@x.com",
            "ﬁ@x.com",
            "Å@x.se",
        ] {
            let once = key(email);
            assert_eq!(key(&once), once, "{email}");
            assert_eq!(normalize(&normalize(email)), normalize(email), "{email}");
        }
    }

    #[test]
    fn invisible_bidi_control_and_space_characters_are_found() {
        for (value, bad) in [
            ("ka\u{200B}te@x.com", '\u{200B}'), // zero-width space
            ("ka\u{200D}te@x.com", '\u{200D}'), // zero-width joiner
            ("\u{FEFF}kate@x.com", '\u{FEFF}'), // byte-order mark
            ("ka\u{00AD}te@x.com", '\u{00AD}'), // soft hyphen
            ("ka\u{202E}te@x.com", '\u{202E}'), // right-to-left override
            ("ka\u{2066}te@x.com", '\u{2066}'), // left-to-right isolate
            ("ka\u{200F}te@x.com", '\u{200F}'), // right-to-left mark
            ("ka\u{0007}te@x.com", '\u{0007}'), // bell
            ("ka\u{00A0}te@x.com", '\u{00A0}'), // no-break space
            ("ka\u{3000}te@x.com", '\u{3000}'), // ideographic space
            ("ka\u{2028}te@x.com", '\u{2028}'), // line separator
            ("kate\u{FE0F}@x.com", '\u{FE0F}'), // variation selector
            ("ka\u{3164}te@x.com", '\u{3164}'), // Hangul filler
            ("ka\u{E000}te@x.com", '\u{E000}'), // private use
            ("ka\u{0378}te@x.com", '\u{0378}'), // unassigned
            ("ka\u{034F}te@x.com", '\u{034F}'), // combining grapheme joiner
        ] {
            assert_eq!(refused_char(value), Some(bad), "{value:?}");
        }
    }

    #[test]
    fn ordinary_international_addresses_pass() {
        for value in [
            "kate@example.com",
            "first.last+tag@mail.example.org",
            "ü@exämple.de",
            "Jose\u{0301}@example.com",
            "用户@例子.广告",
            "δοκιμή@παράδειγμα.δοκιμή",
            "\u{212A}ate@example.com",
        ] {
            assert_eq!(refused_char(value), None, "{value:?}");
        }
    }
}
