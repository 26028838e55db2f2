//! # msrp-tokio
//!
//! MSRP sessions on tokio: the [`msrp_core`] engine driven over tokio sockets and timers,
//! with the API of msrplib ([`ConnectorDirect`], [`AcceptorDirect`], [`Transport`],
//! [`Session`]).
//!
//! The connection driver is `msrp-smol`'s runtime-agnostic one; this crate is only the
//! [`Tokio`] runtime for it: tasks are `tokio::spawn`ed, timers are tokio's (so tests
//! with a paused clock work), and sockets are tokio's, seen through `futures-io`.
//! Everything here must be used from inside a tokio runtime.
//!
//! ## Run loop
//!
//! There is none to write: `complete` starts the driver, and the handles talk to it.
//!
//! ```no_run
//! use bytes::Bytes;
//! use msrp_tokio::{AcceptTypes, ConnectorDirect, Session, Tokio};
//!
//! # async fn remote_path_from_sdp() -> Vec<msrp_tokio::core::Uri> { Vec::new() }
//! # async fn run() -> Result<(), msrp_tokio::Error> {
//! let mut connector = ConnectorDirect::new(Tokio, None, false);
//! let local_path = connector.prepare(None); // goes into the SDP offer
//! let transport = connector.complete(remote_path_from_sdp().await).await?;
//! let session = Session::new(transport, AcceptTypes::any(), None);
//! let message = session.send_message("text/plain", Bytes::from_static(b"Hello world!")).await?;
//! println!("{:?}", message.outcome().await);
//! session.shutdown(true).await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use msrp_smol::runtime::{BoxFuture, BoxStream, ByteStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use msrp_core as core;
pub use msrp_core::AcceptTypes;
pub use msrp_smol::{
    CONNECT_TIMEOUT, ConnectError, DigestUri, DnsError, Error, FIRST_ACCEPT_PAUSE, MAX_ACCEPT_PAUSE, Mode, OnIncoming,
    OnListenError, OnRefused, OutgoingFile, OutgoingMessage, RELAY_CHUNK_SIZE, RELAY_PORT, Refused, RelayError,
    RelayEvent, RelaySettings, Runtime, TlsClient, TlsError, TlsServer, io_phrase, is_transient_accept_error,
    lookup_relay, tls,
};

/// msrplib's `ConnectorDirect` on tokio.
pub type ConnectorDirect = msrp_smol::ConnectorDirect<Tokio>;
/// msrplib's `AcceptorDirect` on tokio.
pub type AcceptorDirect = msrp_smol::AcceptorDirect<Tokio>;
/// msrplib's `MSRPTransport` on tokio.
pub type Transport = msrp_smol::Transport<Tokio>;
/// msrplib's `MSRPSession` on tokio.
pub type Session = msrp_smol::Session<Tokio>;
/// msrplib's `MSRPServer` on tokio.
pub type MsrpServer = msrp_smol::MsrpServer<Tokio>;

/// msrplib's `RelayConnection` on tokio.
pub type RelayConnection = msrp_smol::RelayConnection<Tokio>;
/// msrplib's `ConnectorRelay` on tokio.
pub type ConnectorRelay = msrp_smol::ConnectorRelay<Tokio>;
/// msrplib's `AcceptorRelay` on tokio.
pub type AcceptorRelay = msrp_smol::AcceptorRelay<Tokio>;
/// A direct or relayed outbound connection ([`get_connector`]).
pub type Connector = msrp_smol::Connector<Tokio>;
/// A direct or relayed inbound connection ([`get_acceptor`]).
pub type Acceptor = msrp_smol::Acceptor<Tokio>;

/// An outbound connection (msrplib `get_connector(relay)`): through `relay` when given,
/// else direct.
pub fn get_connector(
    relay: Option<RelaySettings>,
    logger: Option<Box<dyn core::log::TrafficLogger>>,
    use_sessmatch: bool,
) -> Connector {
    msrp_smol::get_connector(Tokio, relay, logger, use_sessmatch)
}

/// An inbound connection (msrplib `get_acceptor(relay)`): through `relay` when given,
/// else direct.
pub fn get_acceptor(
    relay: Option<RelaySettings>,
    logger: Option<Box<dyn core::log::TrafficLogger>>,
    use_sessmatch: bool,
) -> Acceptor {
    msrp_smol::get_acceptor(Tokio, relay, logger, use_sessmatch)
}

/// The tokio runtime of the current context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        // tokio resolves on its blocking pool, off the worker threads.
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }

    fn connect(&self, address: SocketAddr, _timeout: Duration) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(TokioStream(stream)) as BoxStream)
        })
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(address).await?;
            Ok(Box::new(TokioListener(listener)) as Box<dyn Listener>)
        })
    }
}

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            // Only an optimisation, and it fails on a connection the peer already reset
            // (EINVAL on macOS): an error here must not read as the listener's.
            let _ = stream.set_nodelay(true);
            Ok((Box::new(TokioStream(stream)) as BoxStream, peer))
        })
    }
}

/// A tokio TCP connection as the MSRP layer's byte stream: a chunk's parts leave in one
/// vectored write (tokio-util's compat layer writes only the first of them).
struct TokioStream(tokio::net::TcpStream);

/// Reads land in the reused buffers of [`ByteStream::poll_read_bytes`]'s default.
impl ByteStream for TokioStream {}

impl futures::io::AsyncRead for TokioStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().len()))
    }
}

impl futures::io::AsyncWrite for TokioStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
