//! The `gatehouse-backend` executable as scripts use it.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn binary_announces_its_port_serves_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse-backend"))
        .args(["--listen", "127.0.0.1:0", "--name", "cli"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start gatehouse-backend");

    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| ("127.0.0.1", port))
        .unwrap_or_else(|| panic!("unexpected announcement {line:?}"));

    // A raw request shows the exact bytes a non-hyper client would see.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /raw?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\r\nx-backend: cli\r\n"), "{response}");
    assert!(response.contains(r#""path":"/raw?q=1""#), "{response}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn binary_rejects_a_name_that_cannot_be_a_header_value() {
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse-backend"))
        .args(["--listen", "127.0.0.1:0", "--name", "bad\nname"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}
