//! HTTP/2 frames written and read by hand, for what a client library will not do on purpose:
//! streams past the advertised limit, a HEADERS frame never finished, a rapid-reset flood.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types.
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;

// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

// SETTINGS parameters.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

// Error codes.
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame as read.
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// Appends one frame to `out`.
pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Writes one frame to `stream`.
pub async fn write(
    stream: &mut (impl AsyncWriteExt + Unpin),
    kind: u8,
    flags: u8,
    id: u32,
    payload: &[u8],
) {
    let mut out = Vec::new();
    frame(&mut out, kind, flags, id, payload);
    stream.write_all(&out).await.expect("write a frame");
}

/// The preface and an empty SETTINGS frame.
pub fn opening() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    out
}

/// HPACK for `GET http://app.test{path}`: static-table entries and literals only, so no
/// dynamic-table state links one block to the next.
pub fn get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (name_index, value) in [(4u8, path), (1u8, "app.test")] {
        block.push(name_index); // literal without indexing, indexed name (:path, :authority)
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The next frame; `None` once the connection is closed.
pub async fn read(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Frame> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// The error code of a GOAWAY payload.
pub fn goaway_code(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[4..8].try_into().expect("GOAWAY carries a code"))
}
