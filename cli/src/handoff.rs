//! `recv --accept-any`: binding whatever From-Path arrives.
//!
//! `AcceptorDirect::complete` wants the peer's path before it accepts, and the session
//! answers a request from any other path with 481. So `recv` runs its acceptor on
//! [`Handoff`], which is tokio in every respect except that the command can reach the
//! listening socket: with `--accept-any` it accepts the connection itself, reads up to the
//! first request's head to learn its From-Path, and parks the connection, with the bytes
//! already read put back in front, where the acceptor's next accept picks it up. Then
//! `complete` is called with that From-Path.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};
use msrp_core::{Decoded, Decoder, DecoderLimits, Uri};
use msrp_smol::runtime::{BoxFuture, BoxStream, Listener, Runtime};
use msrp_tokio::Tokio;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::compat::TokioAsyncReadCompatExt;

/// Most bytes read while looking for the first request's head.
const HEAD_LIMIT: usize = 64 * 1024;

#[derive(Default)]
struct Shared {
    /// The socket the last `listen` opened.
    listener: Option<Arc<TcpListener>>,
    /// A connection accepted by the command, for the listener's next accept.
    parked: Option<(BoxStream, SocketAddr)>,
}

/// Tokio, with a listening socket the command can accept on itself.
#[derive(Clone, Default)]
pub(crate) struct Handoff {
    shared: Arc<Mutex<Shared>>,
}

impl Handoff {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts the next connection on the socket `listen` opened and reads up to its first
    /// request's head; parks the connection for the acceptor and returns the From-Path.
    pub(crate) async fn accept_first(&self) -> io::Result<Vec<Uri>> {
        let listener = self.shared().listener.clone().ok_or_else(|| io::Error::other("not listening"))?;
        let (mut stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let mut decoder = Decoder::new(DecoderLimits::default());
        let mut read = BytesMut::new();
        let mut buffer = vec![0_u8; 16 * 1024];
        let from_path = 'head: loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                let text = format!("{peer} closed the connection before its first request");
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, text));
            }
            read.extend_from_slice(&buffer[..n]);
            decoder.feed(Bytes::copy_from_slice(&buffer[..n]));
            while let Some(item) = decoder.poll() {
                match item {
                    Ok(Decoded::Head(head)) => match head.from_path() {
                        Ok(path) => break 'head path.0,
                        Err(error) => {
                            let text = format!("the first request from {peer} has no usable From-Path: {error}");
                            return Err(io::Error::new(io::ErrorKind::InvalidData, text));
                        }
                    },
                    Ok(_) => {}
                    Err(error) => {
                        let text = format!("{peer} does not speak MSRP: {error}");
                        return Err(io::Error::new(io::ErrorKind::InvalidData, text));
                    }
                }
            }
            if read.len() > HEAD_LIMIT {
                let text = format!("{peer} sent no MSRP request head in {HEAD_LIMIT} bytes");
                return Err(io::Error::new(io::ErrorKind::InvalidData, text));
            }
        };
        let stream = Replay { prefix: read.freeze(), inner: Box::new(stream.compat()) };
        self.shared().parked = Some((Box::new(stream), peer));
        Ok(from_path)
    }
}

impl Runtime for Handoff {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        Tokio.spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Tokio.sleep_until(deadline)
    }

    fn now(&self) -> Instant {
        Tokio.now()
    }

    fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>> {
        Tokio.connect(address)
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let handoff = self.clone();
        Box::pin(async move {
            let listener = Arc::new(TcpListener::bind(address).await?);
            handoff.shared().listener = Some(Arc::clone(&listener));
            Ok(Box::new(HandoffListener { listener, handoff }) as Box<dyn Listener>)
        })
    }
}

/// Tokio's listener, or first the connection the command parked.
struct HandoffListener {
    listener: Arc<TcpListener>,
    handoff: Handoff,
}

impl Listener for HandoffListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let parked = self.handoff.shared().parked.take();
            if let Some(parked) = parked {
                return Ok(parked);
            }
            let (stream, peer) = self.listener.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream.compat()) as BoxStream, peer))
        })
    }
}

/// A stream whose first bytes were read already: they are read again, then the rest.
struct Replay {
    prefix: Bytes,
    inner: BoxStream,
}

impl AsyncRead for Replay {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
