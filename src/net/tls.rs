//! HTTPS: rustls driven over a shard's non-blocking [`Stream`], so the
//! HTTP code serves a [`TlsStream`] exactly as it serves a plain one (see
//! [`Transport`]). rustls reads from and writes to the socket directly
//! (no extra buffer); a wait happens only when the kernel has nothing to
//! read or no room to write, as for plain connections.
//!
//! A handshake costs the shard one key exchange and one signature, done in
//! one step when the client's hello arrives; everything else waits on the
//! socket, bounded by a deadline, so a slow or silent client holds a
//! connection slot, never the shard.

use super::stream::{Deadline, Stream, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads `cert` (PEM chain, leaf first) and `key` (PEM private key) into a
/// server configuration. Errors name the config key at fault.
pub fn load(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("http.tls.cert: {cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "http.tls.cert: {cert}: no CERTIFICATE block in the file"
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!("http.tls.key: {key}: {e} (a PKCS#8, PKCS#1 or SEC1 PEM key is needed)")
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("http.tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("http.tls.key: {key} does not fit http.tls.cert {cert}: {e}")
            }
            rustls::Error::InvalidCertificate(_) => format!("http.tls.cert: {cert}: {e}"),
            _ => format!("http.tls.key: {key}: {e}"),
        })?;
    // Only HTTP/1.1 is served: a client offering h2 as well picks this.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A shard's own copy of `config`: the certificate is shared (read only),
/// the session cache for resumption is the shard's, so no handshake takes
/// a lock another core holds. (A client resumes on the shard that served
/// it before, when SO_REUSEPORT hands it there again.)
pub fn per_shard(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut own = ServerConfig::clone(config);
    own.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSIONS_PER_SHARD);
    Arc::new(own)
}

/// Resumable TLS sessions remembered per shard (rustls' default size).
const SESSIONS_PER_SHARD: usize = 256;

/// A TLS connection over a shard's [`Stream`].
pub struct TlsStream {
    /// Shared with the shard's table of waiting connections (which may
    /// close it to make room).
    stream: Rc<Stream>,
    /// Borrowed only between awaits: one task serves a connection.
    conn: RefCell<ServerConnection>,
}

/// The socket as rustls' `Read`: `WouldBlock` when it is dry.
struct Pull<'a>(&'a Stream);

impl Read for Pull<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// The socket as rustls' `Write`: `WouldBlock` when it is full.
struct Push<'a>(&'a Stream);

impl Write for Push<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// Runs the server side of a handshake on `stream`, all of it before
    /// `until`. An error (timeout, a closed connection, a client rustls
    /// refuses) means the connection is to be dropped; a TLS alert has
    /// been sent where one is due.
    pub async fn accept(
        stream: Rc<Stream>,
        config: Arc<ServerConfig>,
        until: Instant,
    ) -> io::Result<Self> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let tls = Self {
            stream,
            conn: RefCell::new(conn),
        };
        while tls.conn.borrow().is_handshaking() {
            tls.push(until).await?;
            match tls.pull() {
                Ok(true) => {}
                Ok(false) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tls.stream.wait_readable(until).await?;
                }
                Err(e) => {
                    let _ = tls.push(until).await; // the alert
                    return Err(e);
                }
            }
        }
        // The last flight (and TLS 1.3 session tickets).
        tls.push(until).await?;
        Ok(tls)
    }

    /// Hands rustls what the socket has: `Ok(true)` when records came,
    /// `Ok(false)` at the end of file, `WouldBlock` when it had nothing.
    fn pull(&self) -> io::Result<bool> {
        let mut conn = self.conn.borrow_mut();
        if conn.read_tls(&mut Pull(&self.stream))? == 0 {
            return Ok(false);
        }
        conn.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(true)
    }

    /// Sends every record rustls has queued, waiting for room until
    /// `until`.
    async fn push(&self, until: Instant) -> io::Result<()> {
        loop {
            let sent = {
                let mut conn = self.conn.borrow_mut();
                if !conn.wants_write() {
                    return Ok(());
                }
                conn.write_tls(&mut Push(&self.stream))
            };
            match sent {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.wait_writable(until).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Transport for TlsStream {
    async fn read(&self, buf: &mut [u8], deadline: Deadline) -> io::Result<usize> {
        let mut until = None;
        loop {
            // Plaintext rustls already decrypted comes first: a pipelined
            // request may be there without the socket having anything.
            match self.conn.borrow_mut().reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Ok(0): the client sent close_notify.
                other => return other,
            }
            let until = *until.get_or_insert_with(|| self.stream.resolve(deadline));
            match self.pull() {
                // Records that carry no data (a key update, an alert) may
                // want an answer.
                Ok(true) => self.push(until).await?,
                // Many clients close without close_notify: the end of file
                // is the end, as over plain TCP.
                Ok(false) => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.wait_readable(until).await?;
                }
                Err(e) => {
                    let _ = self.push(until).await;
                    return Err(e);
                }
            }
        }
    }

    async fn write_all(&self, mut bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let until = self.stream.resolve(Deadline::After(timeout));
        while !bytes.is_empty() {
            // rustls takes what fits its buffer limit, sealed into records.
            let taken = self.conn.borrow_mut().writer().write(bytes)?;
            bytes = &bytes[taken..];
            self.push(until).await?;
        }
        Ok(())
    }

    async fn shutdown_write(&self, timeout: Duration) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.push(self.stream.resolve(Deadline::After(timeout)))
            .await?;
        self.stream.shutdown_write()
    }
}
