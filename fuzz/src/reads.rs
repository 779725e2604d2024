//! The settings line the differential targets start with, and the reads its numbers ask for:
//! the same bytes must mean the same messages however they are split.

/// The first line (settings) and the rest (the bytes sent).
pub(crate) fn settings_and_bytes(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    }
}

/// The positive numbers in `settings`: the sizes of the reads, in turn.
pub(crate) fn read_sizes(settings: &str) -> Vec<usize> {
    settings
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .collect()
}

/// `bytes` cut into reads of `sizes` (repeated as needed); no sizes: one read of everything.
pub(crate) fn split<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![bytes];
    }
    let mut chunks = Vec::new();
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    chunks
}
