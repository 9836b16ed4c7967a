//! Upstream clusters: choosing an endpoint, and the pool of keep-alive connections to
//! endpoints.
//!
//! A [`Cluster`] is compiled from a snapshot's `Backend`; the [`Pool`] outlives snapshots,
//! so a new snapshot keeps the connections to endpoints that are still there.

mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use pool::{Pool, PoolConfig, PooledSender, UpstreamError};

use crate::snapshot::BackendId;

/// A backend's ready endpoints with a round-robin cursor.
#[derive(Debug)]
pub struct Cluster {
    pub id: BackendId,
    /// The id as a metric label.
    pub label: Arc<str>,
    pub endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Cluster {
    /// `start` spreads the first picks of a fresh snapshot, so frequent snapshots do not
    /// send every first request to the same endpoint.
    pub fn new(id: BackendId, endpoints: Vec<SocketAddr>, start: usize) -> Self {
        let label = Arc::from(id.0.as_str());
        Cluster {
            id,
            label,
            endpoints,
            next: AtomicUsize::new(start),
        }
    }

    /// The next endpoint in round-robin order, skipping `avoid` when another exists.
    pub fn pick(&self, avoid: Option<SocketAddr>) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let chosen = self.endpoints[first];
        if Some(chosen) == avoid && n > 1 {
            let second = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let alternative = self.endpoints[second];
            if alternative != chosen {
                return Some(alternative);
            }
            return Some(self.endpoints[(first + 1) % n]);
        }
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn round_robin_visits_every_endpoint() {
        let cluster = Cluster::new(
            BackendId("ns/svc:80".into()),
            vec![addr(1), addr(2), addr(3)],
            0,
        );
        let picks: Vec<_> = (0..6).map(|_| cluster.pick(None).unwrap().port()).collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn retry_pick_avoids_the_failed_endpoint() {
        let cluster = Cluster::new(BackendId("ns/svc:80".into()), vec![addr(1), addr(2)], 0);
        for _ in 0..10 {
            assert_eq!(cluster.pick(Some(addr(1))), Some(addr(2)));
        }
        let single = Cluster::new(BackendId("ns/svc:80".into()), vec![addr(1)], 0);
        assert_eq!(single.pick(Some(addr(1))), Some(addr(1)));
        let empty = Cluster::new(BackendId("ns/svc:80".into()), vec![], 0);
        assert_eq!(empty.pick(None), None);
    }
}
