//! A pool of keep-alive HTTP/1.1 connections to upstream endpoints.
//!
//! The proxy checks out a connection before it touches the request body, so a failed
//! connect can be retried on another endpoint with any request. After a response, the
//! connection returns to the pool once hyper says it is ready for another request (the
//! response body was read to the end); a connection that is not returned is closed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::UpstreamBody;

/// Why no connection to an endpoint could be had.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("the HTTP/1.1 handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub connect_timeout: Duration,
    /// How long an unused connection is kept. Shorter than common backend keep-alive
    /// timeouts, so the backend rarely closes a connection just as we reuse it.
    pub idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_idle_per_endpoint: 64,
        }
    }
}

struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

/// Connections by endpoint. Shared by all snapshots.
pub struct Pool {
    config: PoolConfig,
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

/// A connection checked out of the pool.
pub struct PooledSender {
    pub sender: SendRequest<UpstreamBody>,
    pub addr: SocketAddr,
    /// The connection served an earlier request; the backend may have closed it meanwhile.
    pub reused: bool,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Arc<Self> {
        Arc::new(Pool {
            config,
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// An idle connection to `addr` if one is ready, else a new one.
    pub async fn checkout(&self, addr: SocketAddr) -> Result<PooledSender, UpstreamError> {
        if let Some(sender) = self.take_idle(addr) {
            return Ok(PooledSender {
                sender,
                addr,
                reused: true,
            });
        }
        let sender = self.connect(addr).await?;
        Ok(PooledSender {
            sender,
            addr,
            reused: false,
        })
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < self.config.idle_timeout
                && entry.sender.is_ready()
                && !entry.sender.is_closed()
            {
                return Some(entry.sender);
            }
        }
        None
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
        let stream = tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout { addr })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%addr, %error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// Returns a connection once its response has been read to the end.
    pub fn checkin(self: &Arc<Self>, pooled: PooledSender) {
        let pool = Arc::clone(self);
        let PooledSender {
            mut sender, addr, ..
        } = pooled;
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(addr).or_default();
            let timeout = pool.config.idle_timeout;
            list.retain(|entry| entry.since.elapsed() < timeout && !entry.sender.is_closed());
            if list.len() < pool.config.max_idle_per_endpoint {
                list.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        });
    }

    /// Closes idle connections to endpoints that are no longer in any backend.
    pub fn retain_endpoints(&self, live: &HashSet<SocketAddr>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|addr, _| live.contains(addr));
    }
}
