//! A raw HTTP/1.1 client over one keep-alive TCP connection.

use super::bencode::{self, Dict, Fields as _};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as a bencoded dictionary (panics if it is not one).
    pub fn bencode(&self) -> Dict<'_> {
        bencode::parse(&self.body).unwrap_or_else(|e| {
            panic!(
                "invalid bencode ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn failure(&self) -> String {
        String::from_utf8(self.bencode().bytes("failure reason").to_vec()).unwrap()
    }
}

/// A keep-alive HTTP/1.1 client over `S`: TCP, or TLS over TCP.
pub struct HttpClient<S: Read + Write = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl HttpClient {
    pub fn connect(addr: SocketAddr) -> HttpClient {
        Self::with_stream(TcpStream::connect(addr).unwrap())
    }

    /// A connection from `local` (any loopback address).
    pub fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> HttpClient {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.bind(&SocketAddr::new(local, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        Self::with_stream(socket.into())
    }

    fn with_stream(stream: TcpStream) -> HttpClient {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        HttpClient::over(stream)
    }
}

impl<S: Read + Write> HttpClient<S> {
    /// A client over a connected stream (its timeouts set by the caller).
    pub fn over(stream: S) -> HttpClient<S> {
        HttpClient {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.send_raw(format!("GET {target} HTTP/1.1\r\nHost: tracker\r\n\r\n").as_bytes());
        self.read_response().expect("a response")
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next response, or None when the server closed the connection.
    pub fn read_response(&mut self) -> Option<Response> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let status: u16 = lines
                    .next()
                    .unwrap()
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap();
                let headers: Vec<(String, String)> = lines
                    .map(|l| {
                        let (n, v) = l.split_once(':').unwrap();
                        (n.trim().to_string(), v.trim().to_string())
                    })
                    .collect();
                let chunked = headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
                });
                if chunked {
                    self.buf.drain(..end + 4);
                    let body = self.read_chunks()?;
                    return Some(Response {
                        status,
                        headers,
                        body,
                    });
                }
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .expect("content-length");
                while self.buf.len() < end + 4 + len {
                    self.fill()?;
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Some(Response {
                    status,
                    headers,
                    body,
                });
            }
            self.fill()?;
        }
    }

    /// A chunked body (RFC 9112 7.1), the last chunk and trailer read.
    fn read_chunks(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(end) = find(&self.buf, b"\r\n") {
                    break end;
                }
                self.fill()?;
            };
            let size_text = String::from_utf8(self.buf[..line].to_vec()).unwrap();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            while self.buf.len() < line + 2 + size + 2 {
                self.fill()?;
            }
            assert_eq!(&self.buf[line + 2 + size..line + 4 + size], b"\r\n");
            body.extend_from_slice(&self.buf[line + 2..line + 2 + size]);
            self.buf.drain(..line + 4 + size);
            if size == 0 {
                return Some(body);
            }
        }
    }

    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Whether the server closed the connection (read returns 0).
    pub fn is_closed(&mut self) -> bool {
        self.fill().is_none()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes every byte (what BitTorrent clients do for binary values).
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// An announce target with the usual fields.
pub fn announce_target(
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
    port: u16,
    left: u64,
    extra: &str,
) -> String {
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
        encode(info_hash),
        encode(peer_id)
    )
}
