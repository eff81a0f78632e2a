//! The collector's accept loop, with the limits a listener exposed to a
//! whole cluster needs: at most `--max-connections` open at once, and a
//! connection that sends nothing within [`FIRST_BYTE_TIMEOUT`] is closed,
//! so idle or half-open sockets cannot hold the slots well-behaved agents
//! need. Slots are freed when a connection closes (the permit lives in the
//! stream).
use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A client that connects must start its TLS or HTTP/2 handshake within
/// this; real agents do so at once.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections counted since start, for the log and tests.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub refused_at_limit: AtomicU64,
    pub closed_silent: AtomicU64,
}

/// An accepted connection holding its slot.
pub struct Limited {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts on `listener` and yields connections within the limits.
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
    stats: Arc<ListenerStats>,
) -> ReceiverStream<io::Result<Limited>> {
    let slots = Arc::new(Semaphore::new(max_connections));
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let n = stats.refused_at_limit.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        "refused a connection from {peer}: limit --max-connections ({max_connections}) reached ({} refused so far)",
                        n + 1
                    );
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, stats) = (tx.clone(), stats.clone());
            tokio::spawn(async move {
                let mut probe = [0u8; 1];
                match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut probe)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let _ = tx
                            .send(Ok(Limited {
                                stream,
                                _slot: slot,
                            }))
                            .await;
                    }
                    // Closed, failed, or silent: free the slot.
                    _ => {
                        stats.closed_silent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
