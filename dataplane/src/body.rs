//! Body types of the proxy: what goes to an upstream, what goes back to a client, and the
//! client-body idle timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to an upstream.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// A response body on its way to a client.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// A short plain-text body for answers the proxy makes itself.
pub fn text(message: &'static str) -> ResponseBody {
    Full::new(Bytes::from_static(message.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ResponseBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// The client stopped sending its request body for longer than the idle limit.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
pub struct BodyIdleTimeout(pub Duration);

/// A request body that fails when the client sends nothing for `idle`, so a stalled
/// upload cannot hold an upstream connection forever. It also counts the bytes it passes.
pub struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    counted: Arc<AtomicU64>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, idle: Duration, counted: Arc<AtomicU64>) -> Self {
        IdleTimeoutBody {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            counted,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.counted.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(this.idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one frame, then stalls forever.
    struct OneThenStall(bool);

    impl Body for OneThenStall {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"hello")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_limit() {
        let counted = Arc::new(AtomicU64::new(0));
        let mut body = IdleTimeoutBody::new(
            OneThenStall(false),
            Duration::from_secs(60),
            counted.clone(),
        );

        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "hello");

        // Nothing more arrives: after 60 s of paused-clock time the body fails.
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyIdleTimeout>(), "{err}");
        assert!(started.elapsed() >= Duration::from_secs(60));
        assert_eq!(counted.load(Ordering::Relaxed), 5);
    }
}
