//! A TCP proxy in front of Postgres that breaks connections at chosen points of the protocol,
//! for tests of what a client does when the network fails under it:
//! - [`Proxy::cut_after_next_commit`]: the next simple-query `COMMIT` reaches the server, the
//!   server's reply is swallowed and both sides are closed. The transaction committed; the
//!   client sees a broken connection (a lost COMMIT reply).
//! - [`Proxy::cut_all`]: every open connection is closed at once; new ones are refused or
//!   passed per a flag ([`Proxy::refuse_new`]).
//! - [`Proxy::silence_all`]: every open connection stops passing bytes either way but stays
//!   open, like a peer that vanished without a FIN or RST (host down, network partition); new
//!   connections pass.
//!
//! It parses the frontend (client to server) message stream only as far as needed to see the
//! messages' boundaries and the text of simple queries (`Q`); everything else is forwarded
//! byte for byte. Connect with `sslmode=disable` ([`Proxy::url`] does): an encrypted stream
//! cannot be parsed. sqlx sends `COMMIT` as a simple query (no arguments); the texts of all
//! simple queries that passed are kept ([`Proxy::simple_queries`]) so a test can check that.
//!
//! Self-contained (std, tokio, tracing) so any test can include it:
//! `#[path = "../../perfstream-store/tests/support/proxy.rs"] mod proxy;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// A running proxy; stops (and closes every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    /// One-shot: the next `COMMIT` of any connection has its reply cut.
    cut_next_commit: AtomicBool,
    /// New connections are closed as soon as they are accepted.
    refuse_new: AtomicBool,
    /// The open connections: their task (aborting it closes both sockets) and their silence
    /// flag.
    connections: Mutex<Vec<(AbortHandle, Arc<AtomicBool>)>>,
    /// Connections accepted and passed on to the server, so far.
    passed: watch::Sender<usize>,
    /// COMMIT replies cut so far.
    commits_cut: watch::Sender<usize>,
    simple_queries: Mutex<Vec<String>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            cut_next_commit: AtomicBool::new(false),
            refuse_new: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            passed: watch::channel(0).0,
            commits_cut: watch::channel(0).0,
            simple_queries: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `base` (a `postgres://` URL) pointed at the proxy and at `database`, with TLS off.
    pub fn url(&self, base: &str, database: &str) -> String {
        let (scheme, rest) = base.split_once("://").expect("a URL with a scheme");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let user = rest[..end]
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        let mut params: Vec<&str> = rest[end..]
            .split_once('?')
            .map(|(_, q)| q.split('&').collect())
            .unwrap_or_default();
        params.retain(|p| !p.is_empty() && !p.starts_with("sslmode="));
        params.push("sslmode=disable");
        format!(
            "{scheme}://{user}{}/{database}?{}",
            self.addr,
            params.join("&")
        )
    }

    /// Arms a one-shot cut: the next simple-query `COMMIT` is forwarded, then its connection is
    /// closed on both sides before any byte of the server's reply is passed back.
    pub fn cut_after_next_commit(&self) {
        self.shared.cut_next_commit.store(true, Ordering::SeqCst);
    }

    /// Waits until `n` COMMIT replies in all have been cut.
    pub async fn commits_cut(&self, n: usize) {
        self.shared
            .commits_cut
            .subscribe()
            .wait_for(|cut| *cut >= n)
            .await
            .expect("the proxy is alive");
    }

    /// Closes every open connection now; new ones are refused (closed on accept) when
    /// `refuse_new`, passed otherwise.
    pub fn cut_all(&self, refuse_new: bool) {
        self.refuse_new(refuse_new);
        for (task, _) in self.shared.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Every open connection stops passing bytes, both ways, for good, without closing.
    pub fn silence_all(&self) {
        for (_, silent) in self.shared.connections.lock().unwrap().iter() {
            silent.store(true, Ordering::SeqCst);
        }
    }

    /// Whether new connections are closed as soon as they are accepted.
    pub fn refuse_new(&self, refuse: bool) {
        self.shared.refuse_new.store(refuse, Ordering::SeqCst);
    }

    /// Connections passed on to the server so far.
    pub fn connections_passed(&self) -> usize {
        *self.shared.passed.borrow()
    }

    /// The text of every simple query (`Q` message) that went through, in order.
    pub fn simple_queries(&self) -> Vec<String> {
        self.shared.simple_queries.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for (task, _) in self.shared.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if shared.refuse_new.load(Ordering::SeqCst) {
            tracing::debug!("Proxy refused a connection.");
            drop(client);
            continue;
        }
        let silent = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve(client, shared.clone(), silent.clone()));
        let mut open = shared.connections.lock().unwrap();
        open.retain(|(task, _)| !task.is_finished());
        open.push((task.abort_handle(), silent));
    }
}

/// One proxied connection; returning (or being aborted) closes both sockets.
async fn serve(client: TcpStream, shared: Arc<Shared>, silent: Arc<AtomicBool>) {
    let server = match TcpStream::connect(shared.target).await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "Proxy could not reach the server.");
            return;
        }
    };
    shared.passed.send_modify(|n| *n += 1);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Set by the upstream half just before it forwards a COMMIT whose reply is to be cut.
    let cut_reply = AtomicBool::new(false);
    tokio::select! {
        _ = upstream(client_read, server_write, &shared, &cut_reply, &silent) => {}
        _ = downstream(server_read, client_write, &shared, &cut_reply, &silent) => {}
    }
}

/// Client to server, message by message.
async fn upstream(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    cut_reply: &AtomicBool,
    silent: &AtomicBool,
) {
    let mut frontend = Frontend::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut chunk).await;
        if silent.load(Ordering::SeqCst) {
            // Neither bytes nor a close get through any more.
            return std::future::pending().await;
        }
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        frontend.buf.extend_from_slice(&chunk[..n]);
        while let Some(message) = frontend.next_message() {
            let mut cut_after = false;
            if let Some(text) = message.simple_query() {
                tracing::debug!(query = %text, "Proxy passes a simple query.");
                shared.simple_queries.lock().unwrap().push(text.clone());
                if text.trim().eq_ignore_ascii_case("COMMIT")
                    && shared.cut_next_commit.swap(false, Ordering::SeqCst)
                {
                    cut_after = true;
                    cut_reply.store(true, Ordering::SeqCst);
                }
            }
            if to.write_all(&message.bytes).await.is_err() {
                return;
            }
            if cut_after {
                // The client sends nothing more before the reply; the downstream half ends
                // the connection when the reply arrives.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Server to client, as it comes, unless a cut is pending.
async fn downstream(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    cut_reply: &AtomicBool,
    silent: &AtomicBool,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut chunk).await;
        if silent.load(Ordering::SeqCst) {
            // Neither bytes nor a close get through any more.
            return std::future::pending().await;
        }
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut_reply.load(Ordering::SeqCst) {
            // The server answered the COMMIT, so it committed: drop the answer and the
            // connection.
            tracing::debug!(bytes = n, "Proxy cut a COMMIT reply.");
            shared.commits_cut.send_modify(|c| *c += 1);
            return;
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

/// The frontend message stream: untyped messages (`SSLRequest`, `GSSENCRequest`, then the
/// startup message) until the startup message, typed ones (1-byte tag, then a length that
/// counts itself) after it.
#[derive(Default)]
struct Frontend {
    buf: Vec<u8>,
    started: bool,
}

struct Message {
    tag: Option<u8>,
    bytes: Vec<u8>,
}

impl Frontend {
    fn next_message(&mut self) -> Option<Message> {
        let (tag, header) = if self.started {
            (Some(*self.buf.first()?), 1)
        } else {
            (None, 0)
        };
        let len_bytes: [u8; 4] = self.buf.get(header..header + 4)?.try_into().ok()?;
        let total = header + u32::from_be_bytes(len_bytes) as usize;
        if self.buf.len() < total {
            return None;
        }
        let bytes: Vec<u8> = self.buf.drain(..total).collect();
        if !self.started {
            // SSLRequest (80877103) and GSSENCRequest (80877104) are followed by another
            // untyped message; the startup message (or a CancelRequest) by typed ones.
            let code = bytes
                .get(4..8)
                .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
            self.started = !matches!(code, Some(80_877_103 | 80_877_104));
        }
        Some(Message { tag, bytes })
    }
}

impl Message {
    /// The text of a simple query (`Q`, a NUL-terminated string).
    fn simple_query(&self) -> Option<String> {
        if self.tag != Some(b'Q') {
            return None;
        }
        let body = &self.bytes[5..];
        let text = body.split(|b| *b == 0).next().unwrap_or_default();
        Some(String::from_utf8_lossy(text).into_owned())
    }
}
