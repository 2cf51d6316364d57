//! A response body that counts the bytes it passes on and reports once when it ends: at its end,
//! on an error, or when hyper drops it (the client went away, or a body it knows to be done).
//! Every answer is logged and counted through it (upstream answers and those the sidecar makes
//! itself alike), so the access-log line says what the client really got.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::BoxError;

pub struct OnEnd<B: Body, F: FnOnce(u64, bool) + Send + 'static> {
    inner: B,
    bytes: u64,
    on_end: Option<F>,
}

impl<B: Body, F: FnOnce(u64, bool) + Send + 'static> OnEnd<B, F> {
    /// `on_end(bytes passed on, whether the body ended completely)`.
    pub fn new(inner: B, on_end: F) -> Self {
        OnEnd {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes, complete);
        }
    }
}

impl<B: Body, F: FnOnce(u64, bool) + Send + 'static> Drop for OnEnd<B, F> {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.end(complete);
    }
}

impl<B, F> Body for OnEnd<B, F>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
    F: FnOnce(u64, bool) + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Ready(None) => this.end(true),
            Poll::Pending => {}
        }
        polled
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
    use std::sync::{Arc, Mutex};

    use futures::stream;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    type Ends = Arc<Mutex<Vec<(u64, bool)>>>;

    fn streamed(pieces: Vec<Result<&'static str, &'static str>>, ends: &Ends) -> impl Body {
        let frames = pieces.into_iter().map(|p| {
            p.map(|s| Frame::data(Bytes::from_static(s.as_bytes())))
                .map_err(BoxError::from)
        });
        let body = StreamBody::new(stream::iter(frames)).boxed_unsync();
        let ends = ends.clone();
        OnEnd::new(body, move |bytes, complete| {
            ends.lock().expect("lock").push((bytes, complete))
        })
    }

    #[tokio::test]
    async fn reports_once_what_passed_and_how_it_ended() {
        let ends = Ends::default();
        let body = streamed(vec![Ok("abc"), Ok("de")], &ends);
        let got = body.collect().await.ok().map(|b| b.to_bytes());
        assert_eq!(got.as_deref(), Some(&b"abcde"[..]));
        assert_eq!(*ends.lock().expect("lock"), vec![(5, true)]);

        let ends = Ends::default();
        let body = streamed(vec![Ok("abc"), Err("cut"), Ok("never")], &ends);
        assert!(body.collect().await.is_err());
        assert_eq!(*ends.lock().expect("lock"), vec![(3, false)]);

        // Dropped part way (the client went away): incomplete, once.
        let ends = Ends::default();
        let mut body = Box::pin(streamed(vec![Ok("abc"), Ok("de")], &ends));
        let first = body.frame().await;
        assert!(first.is_some());
        drop(body);
        assert_eq!(*ends.lock().expect("lock"), vec![(3, false)]);
    }
}
