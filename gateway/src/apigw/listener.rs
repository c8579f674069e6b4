//! The accept loop's guards, as a listener `axum::serve` runs on:
//!
//! - a cap on open connections: past it, a new socket gets a plain `503` and is closed, and the
//!   open ones carry on;
//! - running out of file descriptors (`EMFILE`/`ENFILE`) does not stall the loop or touch the
//!   open connections: a reserve of spare descriptors ([`RESERVED_DESCRIPTORS`]) is given up,
//!   one per waiting socket, to accept it and answer the same `503`, so the client is refused
//!   with a status instead of left hanging or reset;
//! - a handshake deadline: a connection that has not completed a request in time (a slow or
//!   half-sent handshake) is closed. Once upgraded to a WebSocket, the connection's own idle
//!   and maximum durations take over.
//!
//! axum's own `TcpListener` only sleeps on accept errors and has no cap or header deadline,
//! which is why this is written here.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// After a response, how long an HTTP keep-alive connection may sit before its next request.
const HTTP_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Descriptors held back for refusing sockets when the process is out of them: as many refusals
/// can be in flight at once.
pub const RESERVED_DESCRIPTORS: usize = 8;
/// How long a refused socket is given to send its request, so that closing it after the `503`
/// does not reset the connection (which would lose the response) while its request is unread.
const REFUSAL_DRAIN: Duration = Duration::from_millis(500);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 45\r\nconnection: close\r\n\r\n{\"message\":\"too many connections, try later\"}";

#[derive(Debug)]
pub struct GuardedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    handshake_timeout: Duration,
    /// Held open so that, out of descriptors, one can be freed to accept and refuse a socket.
    spares: Vec<std::fs::File>,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, max_connections: usize, handshake_timeout: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections)),
            handshake_timeout,
            spares: reserve(Vec::new()),
        }
    }

    /// Tops the reserve up; whether it is full.
    fn reserve_full(&mut self) -> bool {
        if self.spares.len() < RESERVED_DESCRIPTORS {
            self.spares = reserve(std::mem::take(&mut self.spares));
        }
        self.spares.len() == RESERVED_DESCRIPTORS
    }

    async fn refuse_without_descriptors(&mut self) {
        tracing::warn!("out of file descriptors: refusing a new connection; open ones are unaffected");
        // Descriptors freed since (refusals done, connections closed) go back to the reserve.
        self.spares = reserve(std::mem::take(&mut self.spares));
        if self.spares.pop().is_none() {
            // Every spare is busy refusing: wait for one rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
        if let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(50), self.inner.accept()).await {
            tokio::spawn(refuse(stream));
        }
    }
}

/// Tops the reserve of spare descriptors up to [`RESERVED_DESCRIPTORS`], as far as the
/// process's limit allows.
fn reserve(mut spares: Vec<std::fs::File>) -> Vec<std::fs::File> {
    while spares.len() < RESERVED_DESCRIPTORS {
        match std::fs::File::open("/dev/null") {
            Ok(spare) => spares.push(spare),
            Err(_) => break,
        }
    }
    spares
}

/// Answers a socket the gateway will not serve with `503` and closes it cleanly: its request is
/// read first (up to [`REFUSAL_DRAIN`]), because closing a socket with unread data resets it and
/// the client could lose the response.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSAL)).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(REFUSAL_DRAIN, drain).await;
}

fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23): per-process and system-wide descriptor limits.
    matches!(e.raw_os_error(), Some(23 | 24))
}

impl Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                // The reserve is topped up first: a descriptor freed since goes back to it
                // before a new connection may keep one. Short of it, the socket is refused.
                Ok((stream, addr)) if !self.reserve_full() => {
                    tracing::warn!(%addr, "out of file descriptors: refusing a new connection; open ones are unaffected");
                    tokio::spawn(refuse(stream));
                }
                Ok((stream, addr)) => match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        return (GuardedStream::new(stream, permit, self.handshake_timeout), addr);
                    }
                    Err(_) => {
                        tracing::warn!(%addr, "connection cap reached; refusing");
                        tokio::spawn(refuse(stream));
                    }
                },
                Err(e) if out_of_descriptors(&e) => self.refuse_without_descriptors().await,
                // The peer gave up before we accepted it, or the kernel is short of memory:
                // pause briefly rather than spin.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection, holding its place under the cap for as long as it is open.
#[derive(Debug)]
pub struct GuardedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    upgraded: Arc<AtomicBool>,
    /// Dropped once the connection is a WebSocket, so an idle socket does not keep a timer.
    deadline: Option<Pin<Box<Sleep>>>,
    /// A response has been written: the connection is past its handshake.
    answered: bool,
}

impl GuardedStream {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, handshake_timeout: Duration) -> Self {
        Self {
            inner,
            _permit: permit,
            upgraded: Arc::new(AtomicBool::new(false)),
            deadline: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
            answered: false,
        }
    }

    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Result<(), io::Error> {
        if self.upgraded.load(Ordering::Relaxed) {
            self.deadline = None;
            return Ok(());
        }
        match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Err(io::Error::new(io::ErrorKind::TimedOut, "no complete request in time")),
            _ => Ok(()),
        }
    }

    fn extend_deadline(&mut self) {
        if let Some(deadline) = self.deadline.as_mut() {
            deadline.as_mut().reset(Instant::now() + HTTP_KEEP_ALIVE);
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.check_deadline(cx)?;
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.answered && buf.filled().len() > before && !self.upgraded.load(Ordering::Relaxed) {
            // A keep-alive client sending its next request is busy, not idle. Before the first
            // response no read extends the deadline: the handshake must complete in time.
            self.extend_deadline();
        }
        read
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && !self.upgraded.load(Ordering::Relaxed) {
            // A response went out: the client's next request gets the keep-alive allowance.
            self.answered = true;
            self.extend_deadline();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The peer of a request, and the switch that lifts the handshake deadline once the
/// connection is a WebSocket.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    upgraded: Arc<AtomicBool>,
}

impl Peer {
    /// The handshake is over: from now on the WebSocket's own timeouts apply.
    pub fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }
}

impl Connected<IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Self { addr: *stream.remote_addr(), upgraded: Arc::clone(&stream.io().upgraded) }
    }
}
