//! What an async runtime must give the MSRP layer: tasks, timers, name resolution, TCP.
//!
//! Everything else in this crate is written against [`Runtime`] and the `futures-io`
//! traits, so one implementation serves every runtime: [`Smol`] here (it also runs
//! inside async-std's executor), and tokio in `msrp-tokio`.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
        match Pin::new(&mut *self).poll_read(cx, buffer.room()) {
            Poll::Ready(read) => Poll::Ready(read.map(|n| buffer.take(n))),
            Poll::Pending => {
                // Nothing to read: a waiting stream holds no buffer.
                buffer.release();
                Poll::Pending
            }
        }
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

/// An I/O error as a phrase for a message: `Connection refused (os error 111)` →
/// `connection refused` (the errors of this crate word system errors with it).
pub fn io_phrase(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        // A capital that starts a sentence, not an acronym.
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
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

    /// Runs a connection's driver in the background: a task that never blocks in a
    /// poll, so a runtime may poll it on any of its threads (the `Threads` runtime of
    /// msrp-blocking polls it on the thread that just woke it). By default,
    /// [`Runtime::spawn`].
    fn spawn_driver(&self, future: BoxFuture<'static, ()>) {
        self.spawn(future);
    }

    /// Completes at `deadline` (at once if it passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;

    /// The current time. Runtimes with a virtual clock override it.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// The addresses `host` (a name, never an IP address) has, with `port`, found
    /// without blocking a thread of the runtime: connecting never stalls the other
    /// sessions while a resolver is slow.
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;

    /// Opens a TCP connection. The caller stops waiting after `timeout`; a runtime whose
    /// connect blocks a thread of its own gives up then too, so that the thread ends.
    fn connect(&self, address: SocketAddr, timeout: Duration) -> BoxFuture<'static, io::Result<BoxStream>>;

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

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        // async-net resolves on its blocking pool, off the executor's threads.
        Box::pin(smol::net::resolve((host, port)))
    }

    fn connect(&self, address: SocketAddr, _timeout: Duration) -> BoxFuture<'static, io::Result<BoxStream>> {
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
            // Only an optimisation, and it fails on a connection the peer already reset
            // (EINVAL on macOS): an error here must not read as the listener's.
            let _ = stream.set_nodelay(true);
            Ok((Box::new(IoStream(stream)) as BoxStream, peer))
        })
    }
}

/// Memory that reads land in, handed out as [`Bytes`] without a copy.
///
/// A read of some size keeps the buffer it landed in; the buffer comes back for another
/// read once every piece of it was dropped. Buffers are zeroed once, when first
/// allocated: a buffer that comes back is read into as it is, so a transfer costs
/// neither page faults for fresh memory nor zeroing. A small read is copied out instead,
/// and its buffer serves the next read at once.
///
/// With an idle size ([`ReadBuffer::with_idle_size`]), a stream that is not busy is
/// offered only that many bytes per read, so that an idle connection holds next to
/// nothing; a read that fills them offers the full size to the next one.
#[derive(Debug)]
pub struct ReadBuffer {
    /// Where the next read goes: initialized bytes, `read_size` or `idle_size` of them.
    current: Option<Vec<u8>>,
    /// Buffers of `read_size` whose pieces were all dropped, ready for the next reads.
    free: Arc<Mutex<FreeBuffers>>,
    /// Most bytes one read is offered.
    read_size: usize,
    /// Bytes a read is offered while the stream is not busy.
    idle_size: usize,
    /// Reads are offered `read_size`: one filled the `idle_size` offered to it.
    large: bool,
    /// Small reads in a row (under a sixteenth of `read_size`).
    small_reads: u32,
    /// Reads that found nothing, in a row (no read of more than a small one between).
    empty_reads: u32,
}

/// Small reads in a row after which a stream counts as idle.
const IDLE_AFTER_SMALL_READS: u32 = 4;
/// Reads finding nothing in a row after which a stream counts as idle: more than small
/// reads, as a driver woken for other work (the application taking events) tries a read
/// on every turn, in the middle of a transfer too.
const IDLE_AFTER_EMPTY_READS: u32 = 64;

#[derive(Debug)]
struct FreeBuffers {
    buffers: Vec<Vec<u8>>,
    /// Most buffers kept.
    keep: usize,
    /// Reads fill buffers: buffers that come back are kept (an idle stream keeps none).
    busy: bool,
}

/// A read that keeps its buffer; the buffer goes back to its [`ReadBuffer`] when the
/// last piece of it is dropped.
struct Piece {
    buffer: Vec<u8>,
    len: usize,
    free: Weak<Mutex<FreeBuffers>>,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if let Some(free) = self.free.upgrade() {
            lock(&free).keep(std::mem::take(&mut self.buffer));
        }
    }
}

impl FreeBuffers {
    /// Keeps `buffer` for the next reads while the stream is busy and there is room.
    fn keep(&mut self, buffer: Vec<u8>) {
        if self.busy && self.buffers.len() < self.keep {
            self.buffers.push(buffer);
        }
    }
}

fn lock(free: &Mutex<FreeBuffers>) -> std::sync::MutexGuard<'_, FreeBuffers> {
    free.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ReadBuffer {
    /// Reads of up to `read_size` bytes. While the stream is busy (fewer than four reads
    /// in a row under a sixteenth of `read_size`), up to `keep` buffers that came back are
    /// kept for the next reads (pieces can stay in use for a while: queued as events, or a file's
    /// chunks on their way out).
    pub fn new(read_size: usize, keep: usize) -> Self {
        let free = FreeBuffers { buffers: Vec::new(), keep, busy: false };
        Self {
            current: None,
            free: Arc::new(Mutex::new(free)),
            read_size,
            idle_size: read_size,
            large: true,
            small_reads: 0,
            empty_reads: 0,
        }
    }

    /// Offers reads only `idle_size` bytes (at most `read_size`) until one fills them,
    /// and again once the stream is idle: after four small reads in a row, or 64
    /// reads in a row that found nothing ([`ReadBuffer::release`]).
    #[must_use]
    pub fn with_idle_size(mut self, idle_size: usize) -> Self {
        self.idle_size = idle_size.clamp(1, self.read_size);
        self.large = self.idle_size == self.read_size;
        self
    }

    /// Where the next read goes: `read_size` initialized bytes, or `idle_size` while the
    /// stream is not busy.
    pub fn room(&mut self) -> &mut [u8] {
        let size = if self.large { self.read_size } else { self.idle_size };
        if self.current.as_ref().is_some_and(|buffer| buffer.len() != size) {
            self.current = None;
        }
        let free = &self.free;
        self.current.get_or_insert_with(|| {
            // Only buffers of the full size are kept; a small one is cheap to make.
            let reused = if size == self.read_size { lock(free).buffers.pop() } else { None };
            reused.unwrap_or_else(|| vec![0; size])
        })
    }

    /// The first `n` bytes of the room, read into.
    pub fn take(&mut self, n: usize) -> Bytes {
        let Some(buffer) = self.current.take() else { return Bytes::new() };
        let n = n.min(buffer.len());
        let small = n < self.read_size / 16;
        self.small_reads = if small { self.small_reads.saturating_add(1) } else { 0 };
        if !small {
            self.empty_reads = 0;
        }
        if n == buffer.len() && n > 0 {
            // The stream had more than was offered: offer all from now on.
            self.large = true;
        }
        if self.small_reads >= IDLE_AFTER_SMALL_READS {
            // A few small reads in a row: the stream is not busy, and buffers are let go
            // (an idle stream holds one small buffer, not a pool). A transfer brings a
            // small read now and then, when the reader is ahead of the writer.
            self.idle();
        } else {
            lock(&self.free).busy = true;
        }
        if small || buffer.len() != self.read_size {
            let piece = Bytes::copy_from_slice(&buffer[..n]);
            self.current = Some(buffer);
            return piece;
        }
        Bytes::from_owner(Piece { buffer, len: n, free: Arc::downgrade(&self.free) })
    }

    /// A read found nothing (the stream will wake its task when bytes come): the room is
    /// let go while the stream waits (a full-size one is kept for the next read while the
    /// stream is busy), and after 64 such reads in a row the stream counts as idle.
    pub fn release(&mut self) {
        if let Some(buffer) = self.current.take() {
            if buffer.len() == self.read_size && self.idle_size != self.read_size {
                lock(&self.free).keep(buffer);
            } else if self.idle_size == self.read_size {
                // A buffer that never shrinks stays where it is.
                self.current = Some(buffer);
            }
        }
        self.empty_reads = self.empty_reads.saturating_add(1);
        if self.empty_reads >= IDLE_AFTER_EMPTY_READS {
            self.idle();
        }
    }

    /// The stream is not busy: buffers coming back are not kept, and reads are offered
    /// the idle size.
    fn idle(&mut self) {
        let mut free = lock(&self.free);
        free.busy = false;
        free.buffers.clear();
        self.large = self.idle_size == self.read_size;
    }
}

#[cfg(test)]
mod tests {
    use super::{ReadBuffer, io_phrase};

    #[test]
    fn system_errors_read_as_a_phrase() {
        assert_eq!(io_phrase(&std::io::Error::other("Connection refused (os error 111)")), "connection refused");
        assert_eq!(io_phrase(&std::io::Error::other("TLS handshake")), "TLS handshake");
    }

    /// Reads `n` bytes of `fill` into the buffer's room.
    fn read(buffer: &mut ReadBuffer, n: usize, fill: u8) -> bytes::Bytes {
        buffer.room()[..n].fill(fill);
        buffer.take(n)
    }

    #[test]
    fn a_buffer_is_reused_once_its_pieces_are_dropped() {
        let mut buffer = ReadBuffer::new(100, 2);
        let first = read(&mut buffer, 100, 1);
        let start = first.as_ptr();
        let part = first.slice(10..20);
        drop(first);
        let second = read(&mut buffer, 100, 2);
        assert_ne!(second.as_ptr(), start, "a piece of the first buffer is still in use");
        drop(part);
        let again = read(&mut buffer, 100, 3);
        assert_eq!(again.as_ptr(), start, "the first buffer serves again");
        assert!(again.iter().all(|&byte| byte == 3));
    }

    #[test]
    fn pieces_in_use_are_never_written_over() {
        let mut buffer = ReadBuffer::new(100, 2);
        let pieces: Vec<_> = (0..10).map(|i| read(&mut buffer, 100 - i, i as u8)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            assert_eq!(piece.len(), 100 - i);
            assert!(piece.iter().all(|&byte| usize::from(byte) == i), "piece {i} kept its bytes");
        }
    }

    #[test]
    fn a_small_read_is_copied_and_its_buffer_serves_the_next_read() {
        let mut buffer = ReadBuffer::new(100, 2);
        let room = buffer.room().as_ptr();
        let small = read(&mut buffer, 5, 7);
        assert_eq!(&small[..], &[7; 5][..]);
        assert_ne!(small.as_ptr(), room, "copied out");
        assert_eq!(buffer.room().as_ptr(), room, "the same buffer takes the next read");
        assert!(read(&mut buffer, 0, 0).is_empty());
    }

    #[test]
    fn an_idle_stream_keeps_no_buffers() {
        let mut buffer = ReadBuffer::new(100, 4);
        drop([read(&mut buffer, 100, 1), read(&mut buffer, 100, 2)]);
        assert_eq!(buffer.free.lock().unwrap().buffers.len(), 2, "kept while the stream is busy");
        for _ in 1..super::IDLE_AFTER_SMALL_READS {
            let _small = read(&mut buffer, 5, 3);
        }
        // One of the two serves the small reads.
        assert_eq!(buffer.free.lock().unwrap().buffers.len(), 1, "a few small reads happen in a transfer");
        let _small = read(&mut buffer, 5, 3);
        assert!(buffer.free.lock().unwrap().buffers.is_empty(), "let go after a few small reads in a row");
        let piece = read(&mut buffer, 100, 4);
        for _ in 0..super::IDLE_AFTER_SMALL_READS {
            let _small = read(&mut buffer, 5, 5);
        }
        drop(piece);
        assert!(buffer.free.lock().unwrap().buffers.is_empty(), "nor kept when it comes back while idle");
    }

    #[test]
    fn a_stream_with_an_idle_size_reads_small_until_a_read_fills_it() {
        let mut buffer = ReadBuffer::new(100, 2).with_idle_size(10);
        assert_eq!(buffer.room().len(), 10, "a new stream is offered the idle size");
        let chat = read(&mut buffer, 4, 1);
        assert_eq!(&chat[..], &[1; 4][..]);
        assert_eq!(buffer.room().len(), 10, "a read that did not fill it changes nothing");
        let full = read(&mut buffer, 10, 2);
        assert_eq!(&full[..], &[2; 10][..], "a small room's read is copied out");
        assert_eq!(buffer.room().len(), 100, "a read that filled the room asks for all next");
        let large = read(&mut buffer, 100, 3);
        assert!(large.iter().all(|&byte| byte == 3));
        for _ in 0..super::IDLE_AFTER_SMALL_READS {
            let _small = read(&mut buffer, 5, 4);
        }
        assert_eq!(buffer.room().len(), 10, "small reads in a row: idle again");
    }

    #[test]
    fn a_waiting_stream_holds_no_buffer() {
        let mut buffer = ReadBuffer::new(100, 2).with_idle_size(10);
        let _ = buffer.room();
        buffer.release();
        assert!(buffer.current.is_none(), "an idle stream that waits holds nothing");
        // Busy: the full-size room goes back to the pool while the stream waits, and the
        // next read takes it from there, as it is.
        drop(read(&mut buffer, 10, 1));
        let room = buffer.room().as_ptr();
        buffer.release();
        assert!(buffer.current.is_none());
        assert_eq!(buffer.free.lock().unwrap().buffers.len(), 1, "kept for the next read");
        assert_eq!(buffer.room().as_ptr(), room, "reused, not allocated again");
        for _ in 2..super::IDLE_AFTER_EMPTY_READS {
            buffer.release();
        }
        assert_eq!(buffer.free.lock().unwrap().buffers.len(), 1, "a busy stream's driver tries reads in between");
        buffer.release();
        assert!(buffer.free.lock().unwrap().buffers.is_empty(), "let go after many empty reads in a row");
        assert_eq!(buffer.room().len(), 10, "and reads are small again");
    }

    #[test]
    fn a_buffer_without_an_idle_size_keeps_its_room_while_waiting() {
        let mut buffer = ReadBuffer::new(100, 2);
        let room = buffer.room().as_ptr();
        buffer.release();
        assert_eq!(buffer.room().as_ptr(), room);
        assert_eq!(buffer.room().len(), 100);
    }

    #[test]
    fn no_more_buffers_are_kept_than_asked() {
        let mut buffer = ReadBuffer::new(100, 2);
        drop((0..5).map(|i| read(&mut buffer, 100, i)).collect::<Vec<_>>());
        assert_eq!(buffer.free.lock().unwrap().buffers.len(), 2);
    }
}
