//! Live connections, by connection ID: what `@connections` and in-process pushes reach.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;
use rand::Rng;
use tokio::sync::mpsc;

/// A frame queued for a connection's writer.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Binary(bytes::Bytes),
}

/// One live connection, as the rest of the gateway sees it.
#[derive(Debug)]
pub struct ConnectionHandle {
    pub connection_id: String,
    pub source: SocketAddr,
    pub user_agent: Option<String>,
    /// Epoch milliseconds.
    pub connected_at: i64,
    /// Epoch milliseconds of the last frame from the client.
    pub last_active_at: AtomicI64,
    pub tx: mpsc::Sender<Outbound>,
    /// Signalled by DELETE @connections; a permit is kept if the writer is busy.
    pub close_requested: tokio::sync::Notify,
}

/// Why a post to a connection failed, mapped to @connections' status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("410 Gone")]
    Gone,
    #[error("413 Payload Too Large")]
    PayloadTooLarge,
    #[error("429 the connection's outbound queue is full")]
    Throttled,
}

#[derive(Debug, Default)]
pub struct Registry {
    connections: DashMap<String, Arc<ConnectionHandle>>,
}

impl Registry {
    pub fn insert(&self, handle: Arc<ConnectionHandle>) {
        self.connections.insert(handle.connection_id.clone(), handle);
    }

    pub fn remove(&self, connection_id: &str) {
        self.connections.remove(connection_id);
    }

    pub fn get(&self, connection_id: &str) -> Option<Arc<ConnectionHandle>> {
        self.connections.get(connection_id).map(|c| Arc::clone(&c))
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Queues `data` for the connection as one frame (text when it is UTF-8, as API Gateway
    /// sends it), without waiting: a full queue is the client's problem, not the caller's.
    pub fn post(&self, connection_id: &str, data: &[u8], max_message_bytes: usize) -> Result<(), PostError> {
        let handle = self.get(connection_id).ok_or(PostError::Gone)?;
        if data.len() > max_message_bytes {
            return Err(PostError::PayloadTooLarge);
        }
        let frame = match std::str::from_utf8(data) {
            Ok(text) => Outbound::Text(text.to_owned()),
            Err(_) => Outbound::Binary(bytes::Bytes::copy_from_slice(data)),
        };
        handle.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PostError::Throttled,
            mpsc::error::TrySendError::Closed(_) => PostError::Gone,
        })
    }

    /// Asks the connection to close (DELETE @connections).
    pub fn close(&self, connection_id: &str) -> Result<(), PostError> {
        let (_, handle) = self.connections.remove(connection_id).ok_or(PostError::Gone)?;
        handle.close_requested.notify_one();
        Ok(())
    }

    pub fn touch(handle: &ConnectionHandle, now_ms: i64) {
        handle.last_active_at.store(now_ms, Ordering::Relaxed);
    }
}

/// A connection ID shaped like API Gateway's: 16 characters, base64-like, ending in `=`, so
/// clients that forget to URL-encode it find out locally rather than in production.
pub fn new_connection_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id: String = (0..15).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    id.push('=');
    id
}
