//! What an async runtime must give the MSRP layer: tasks, timers, TCP.
//!
//! Everything else in this crate is written against [`Runtime`] and the `futures-io`
//! traits, so one implementation serves every runtime: [`Smol`] here (it also runs
//! inside async-std's executor), and tokio in `msrp-tokio`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use futures::io::{AsyncRead, AsyncWrite};

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream: a TCP connection, possibly wrapped in TLS.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A boxed [`ByteStream`].
pub type BoxStream = Box<dyn ByteStream>;

/// A listening socket.
pub trait Listener: Send + 'static {
    /// The address it listens on (the port is filled in when 0 was asked for).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The next incoming connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
}

/// An async runtime. Cheap to clone; every clone is the same runtime.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Runs `future` in the background.
    fn spawn(&self, future: BoxFuture<'static, ()>);

    /// Completes at `deadline` (at once if it passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;

    /// The current time. Runtimes with a virtual clock override it.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Opens a TCP connection.
    fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>>;

    /// Listens on `address` (port 0 picks a free port).
    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
}

/// The smol runtime: its global executor, async-io timers and `smol::net` sockets. It
/// works from any thread and inside async-std (which runs on the same reactor).
#[cfg(feature = "smol")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

#[cfg(feature = "smol")]
impl Runtime for Smol {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = smol::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = smol::net::TcpListener::bind(address).await?;
            Ok(Box::new(SmolListener(listener)) as Box<dyn Listener>)
        })
    }
}

#[cfg(feature = "smol")]
struct SmolListener(smol::net::TcpListener);

#[cfg(feature = "smol")]
impl Listener for SmolListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }
}
