//! Refuses an ingest stream that ends inside a gRPC message.
//!
//! tonic (0.14.9, `codec/decode.rs`) decides at the end of a request body
//! whether the last message was cut by looking for bytes left in its
//! buffer. A cut frame of which only the 5-byte header arrived leaves none
//! (the header was consumed), so the stream ends as if it were complete:
//! nothing is stored, but the client hears OK. This wrapper follows the
//! framing of the body (flag byte, 4-byte big-endian length, message) and,
//! when the body ends inside a frame, ends it with INVALID_ARGUMENT naming
//! how much of the message came. It counts bytes; it copies nothing.
use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf as _, Bytes};
use http_body::{Frame, SizeHint};
use tonic::{Status, body::Body, codegen::http, server::NamedService};

/// A service whose request bodies are checked for a cut last message.
#[derive(Debug, Clone)]
pub struct FramingChecked<S>(pub S);

impl<S: NamedService> NamedService for FramingChecked<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for FramingChecked<S>
where
    S: tower_service::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.0
            .call(request.map(|body| Body::new(Framed::new(body))))
    }
}

/// Where the body is in its gRPC framing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Framing {
    /// Header bytes of the current frame seen so far (0..5).
    header_seen: usize,
    /// The current frame's length, once its header is complete.
    length: u32,
    /// Message bytes of the current frame still to come.
    remaining: u64,
}

impl Framing {
    /// Follows `data`, the next bytes of the body.
    fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            // A header byte: the flag (byte 0), then the length's four.
            if self.header_seen > 0 {
                self.length = (self.length << 8) | u32::from(data[0]);
            } else {
                self.length = 0;
            }
            self.header_seen += 1;
            data = &data[1..];
            if self.header_seen == 5 {
                self.header_seen = 0;
                self.remaining = u64::from(self.length);
            }
        }
    }

    /// The body may end here: between frames.
    fn at_boundary(&self) -> bool {
        self.header_seen == 0 && self.remaining == 0
    }

    fn cut(&self) -> Status {
        if self.header_seen > 0 {
            Status::invalid_argument(format!(
                "the stream ended inside a message header ({} of 5 bytes)",
                self.header_seen
            ))
        } else {
            Status::invalid_argument(format!(
                "the stream ended inside a message: {} of its {} bytes came",
                u64::from(self.length) - self.remaining,
                self.length
            ))
        }
    }
}

/// A request body and its framing.
struct Framed {
    inner: Body,
    framing: Framing,
    /// The cut was reported; the body is over.
    done: bool,
}

impl Framed {
    fn new(inner: Body) -> Self {
        Self {
            inner,
            framing: Framing::default(),
            done: false,
        }
    }
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.framing.advance(data.chunk());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None if this.framing.at_boundary() => Poll::Ready(None),
            None => {
                this.done = true;
                Poll::Ready(Some(Err(this.framing.cut())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Mid-frame, the end is not reached until the cut is reported.
        self.done || (self.inner.is_end_stream() && self.framing.at_boundary())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Whole frames, split anywhere, end at a boundary; a cut anywhere
    /// inside a header or a message does not.
    #[test]
    fn follows_frames_across_any_split() {
        let mut body = frame(3, b"abc");
        body.extend(frame(0, b""));
        body.extend(frame(300, &[7; 300]));
        for split in 0..=body.len() {
            let mut f = Framing::default();
            f.advance(&body[..split]);
            f.advance(&body[split..]);
            assert!(f.at_boundary(), "split at {split}");
        }
        for cut in 1..body.len() {
            let mut f = Framing::default();
            f.advance(&body[..cut]);
            let boundary = [8, 13].contains(&cut);
            assert_eq!(f.at_boundary(), boundary, "cut at {cut}");
        }
    }

    #[test]
    fn a_header_only_frame_is_a_cut_that_names_itself() {
        let mut f = Framing::default();
        f.advance(&frame(100, b""));
        assert!(!f.at_boundary());
        assert_eq!(
            f.cut().message(),
            "the stream ended inside a message: 0 of its 100 bytes came"
        );
        let mut f = Framing::default();
        f.advance(&[0, 0]);
        assert_eq!(
            f.cut().message(),
            "the stream ended inside a message header (2 of 5 bytes)"
        );
    }
}
