//! Per-connection activity: when bytes last moved, whether a request is in flight, and
//! since when the connection has waited for a request head. The connection task reads it
//! to enforce the request-header timeout and the keep-alive idle timeout.
//!
//! hyper's own HTTP/1 header timeout also bounds the idle wait between keep-alive
//! requests; DESIGN.md wants those as two limits (10 s and 75 s), hence this.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds since `origin` of the last read or write.
    last_io: AtomicU64,
    /// Milliseconds since `origin` when the connection began waiting for a request head
    /// and bytes of it arrived (or the connection opened); `NONE` otherwise.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
}

/// What ran out.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    RequestHeader,
    Idle,
}

impl Activity {
    /// A new connection, already waiting for its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request head was parsed; the returned guard marks the request done when dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// When the next limit could run out, or `None` if nothing is pending.
    pub fn next_deadline(&self, header_timeout: Option<Duration>, idle: Duration) -> Instant {
        let head = self.head_since.load(Ordering::Relaxed);
        let head_deadline = match header_timeout {
            Some(limit) if head != NONE => Some(self.at(head) + limit),
            _ => None,
        };
        let idle_deadline = if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.at(self.last_io.load(Ordering::Relaxed)) + idle
        } else {
            Instant::now() + idle
        };
        match head_deadline {
            Some(head) => head.min(idle_deadline),
            None => idle_deadline,
        }
    }

    /// Which limit, if any, has run out now.
    pub fn expired(&self, header_timeout: Option<Duration>, idle: Duration) -> Option<Expired> {
        let now = Instant::now();
        let head = self.head_since.load(Ordering::Relaxed);
        if let Some(limit) = header_timeout
            && head != NONE
            && now >= self.at(head) + limit
        {
            return Some(Expired::RequestHeader);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0
            && now >= self.at(self.last_io.load(Ordering::Relaxed)) + idle
        {
            return Some(Expired::Idle);
        }
        None
    }
}

/// Marks a request finished when dropped (the response body ended or was abandoned).
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.last_io.store(activity.now_ms(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An I/O stream that records its activity.
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Option<Duration> = Some(Duration::from_secs(10));
    const IDLE: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_runs_out_of_header_time() {
        let activity = Activity::new();
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(activity.expired(HEADER, IDLE), None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(activity.expired(HEADER, IDLE), Some(Expired::RequestHeader));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keepalive_connection_waits_for_the_idle_limit_not_the_header_limit() {
        let activity = Activity::new();
        let guard = activity.request_started();
        tokio::time::sleep(Duration::from_secs(30)).await;
        // A slow upstream is not idleness.
        assert_eq!(activity.expired(HEADER, IDLE), None);
        drop(guard);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(activity.expired(HEADER, IDLE), None);
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(activity.expired(HEADER, IDLE), Some(Expired::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_of_a_new_head_start_the_header_clock() {
        let activity = Activity::new();
        drop(activity.request_started());
        tokio::time::sleep(Duration::from_secs(20)).await;
        activity.on_read();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(activity.expired(HEADER, IDLE), Some(Expired::RequestHeader));
    }
}
