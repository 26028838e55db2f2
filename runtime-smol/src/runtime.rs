//! What an async runtime must give the MSRP layer: tasks, timers, TCP.
//!
//! Everything else in this crate is written against [`Runtime`] and the `futures-io`
//! traits, so one implementation serves every runtime: [`Smol`] here (it also runs
//! inside async-std's executor), and tokio in `msrp-tokio`.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::buf::Limit;
use bytes::{BufMut, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream: a TCP connection, possibly wrapped in TLS.
///
/// Streams read and written through `futures-io` are wrapped in [`IoStream`]. A stream
/// that receives into buffers of its own, or queues what it is given, overrides the two
/// methods so that bytes pass without a copy (the `Threads` runtime of `msrp-blocking`).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Reads what has arrived into `buffer` and returns it; empty at the end of the
    /// stream. Same contract as [`AsyncRead::poll_read`].
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, buffer: &mut ReadBuffer) -> Poll<io::Result<Bytes>> {
        let read = Pin::new(&mut *self).poll_read(cx, buffer.room());
        read.map_ok(|n| buffer.take(n))
    }

    /// Writes from the front of `parts`, in order, as one write where the stream can (a
    /// chunk's head, body and end-line leave in one segment, not three); returns how many
    /// bytes were taken. Same contract as [`AsyncWrite::poll_write_vectored`].
    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, parts: &[Bytes]) -> Poll<io::Result<usize>> {
        let slices: Vec<IoSlice<'_>> = parts.iter().take(MAX_WRITE_PARTS).map(|part| IoSlice::new(part)).collect();
        Pin::new(self).poll_write_vectored(cx, &slices)
    }
}

/// Most parts given to one vectored write.
pub const MAX_WRITE_PARTS: usize = 64;

/// Any `futures-io` stream as a [`ByteStream`].
pub struct IoStream<T>(pub T);

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for IoStream<T> {}

impl<T: AsyncRead + Unpin> AsyncRead for IoStream<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IoStream<T> {
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
        Pin::new(&mut self.0).poll_close(cx)
    }
}

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
            Ok(Box::new(IoStream(stream)) as BoxStream)
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
            Ok((Box::new(IoStream(stream)) as BoxStream, peer))
        })
    }
}

/// Memory that reads land in, handed out as [`Bytes`] without a copy.
///
/// One allocation serves several reads, and is taken back for more once every piece of
/// it was dropped: fresh allocations cost page faults and zeroing, which at loopback
/// speed cost more than the copy they save.
#[derive(Debug)]
pub struct ReadBuffer {
    current: BytesMut,
    /// Earlier allocations whose pieces may still be in use, oldest first.
    retired: VecDeque<BytesMut>,
    /// Most bytes one read is offered.
    read_size: usize,
    /// Bytes allocated at once: a few reads' worth.
    capacity: usize,
    /// Earlier allocations kept for reuse.
    keep: usize,
    /// Whether `current` is an allocation (not the empty buffer it starts as).
    allocated: bool,
}

impl ReadBuffer {
    /// Reads of up to `read_size` bytes, from allocations of `capacity` bytes. While the
    /// stream is busy (no read under a sixteenth of `read_size`), up to `keep` earlier
    /// allocations are kept, to be reused once
    /// every piece of one was dropped (pieces can stay in use for a while: queued as
    /// events, or a file's chunks on their way out).
    pub fn new(read_size: usize, capacity: usize, keep: usize) -> Self {
        let capacity = capacity.max(read_size);
        Self { current: BytesMut::new(), retired: VecDeque::new(), read_size, capacity, keep, allocated: false }
    }

    /// Where the next read goes: `read_size` initialized bytes.
    pub fn room(&mut self) -> &mut [u8] {
        self.make_room();
        // Zeroed just before the read, while the memory is about to be used anyway.
        self.current.resize(self.read_size, 0);
        &mut self.current[..self.read_size]
    }

    /// For a stream that reads into memory not initialized yet (tokio's `ReadBuf`): where
    /// to append one read of up to `read_size` bytes. What was appended is then taken with
    /// [`ReadBuffer::take`].
    pub fn spare(&mut self) -> Limit<&mut BytesMut> {
        self.make_room();
        self.current.clear();
        (&mut self.current).limit(self.read_size)
    }

    /// Makes sure `current` can take a read, from a reusable allocation if one is free.
    fn make_room(&mut self) {
        if self.current.capacity() < self.read_size {
            let used = std::mem::take(&mut self.current);
            if self.allocated {
                self.retired.push_back(used);
            }
            self.allocated = true;
            // Pieces are dropped about in the order they were read: the oldest first.
            let capacity = self.capacity;
            let free = self.retired.iter_mut().position(|old| {
                old.clear();
                old.try_reclaim(capacity)
            });
            let next = free.and_then(|at| self.retired.remove(at));
            while self.retired.len() > self.keep {
                self.retired.pop_front();
            }
            self.current = next.unwrap_or_else(|| BytesMut::with_capacity(self.capacity));
        }
    }

    /// The first `n` bytes of the room (or of the spare buffer), read into.
    pub fn take(&mut self, n: usize) -> Bytes {
        if n < self.read_size / 16 {
            // A small read: the stream is not busy, so earlier allocations are let go (an
            // idle connection holds one buffer, not a pool). Reads during a transfer are
            // rarely this small, even when the reader is ahead of the writer.
            self.retired.clear();
        }
        self.current.split_to(n.min(self.current.len())).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::ReadBuffer;
    use bytes::BufMut;

    /// Reads `n` bytes of `fill` into the buffer's room.
    fn read(buffer: &mut ReadBuffer, n: usize, fill: u8) -> bytes::Bytes {
        buffer.room()[..n].fill(fill);
        buffer.take(n)
    }

    #[test]
    fn an_allocation_is_reused_once_its_pieces_are_dropped() {
        let mut buffer = ReadBuffer::new(100, 200, 2);
        let first = read(&mut buffer, 100, 1);
        let start = first.as_ptr();
        drop(first);
        drop(read(&mut buffer, 100, 2));
        let again = read(&mut buffer, 100, 3);
        assert_eq!(again.as_ptr(), start, "the first allocation serves again");
        assert!(again.iter().all(|&byte| byte == 3));
    }

    #[test]
    fn pieces_in_use_are_never_written_over() {
        let mut buffer = ReadBuffer::new(100, 200, 2);
        let pieces: Vec<_> = (0..10).map(|i| read(&mut buffer, 100, i)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            assert!(piece.iter().all(|&byte| usize::from(byte) == i), "piece {i} kept its bytes");
        }
    }

    #[test]
    fn reads_appended_to_the_spare_buffer_are_taken_the_same_way() {
        let mut buffer = ReadBuffer::new(100, 200, 2);
        let mut spare = buffer.spare();
        assert_eq!(spare.remaining_mut(), 100, "one read's worth");
        spare.put_slice(&[7; 60]);
        let piece = buffer.take(60);
        assert_eq!(&piece[..], &[7; 60][..]);
        let zeroed = read(&mut buffer, 40, 8);
        assert_eq!(&zeroed[..], &[8; 40][..], "the room after an appended read is the room");
    }

    #[test]
    fn short_reads_let_earlier_allocations_go() {
        let mut buffer = ReadBuffer::new(100, 100, 4);
        let _pieces = [read(&mut buffer, 100, 1), read(&mut buffer, 100, 2)];
        assert_eq!(buffer.retired.len(), 1, "kept while the stream is busy");
        let _small = read(&mut buffer, 5, 3);
        assert!(buffer.retired.is_empty(), "an idle stream holds one allocation");
    }
}
