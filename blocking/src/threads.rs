//! The [`Threads`] runtime: the async layer of `msrp-smol` run on plain threads.
//!
//! A spawned task gets a thread of its own that runs it to completion with
//! `futures::executor::block_on`. Timers are served by one timer thread. A socket is a
//! `std::net::TcpStream` with a reader thread and a writer thread that move bytes through
//! channels, so the tasks see a non-blocking stream.

use std::collections::BTreeMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::{Condvar, Mutex, Once, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Instant;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncRead, AsyncWrite};
use futures::{Sink, SinkExt, StreamExt};
use msrp_smol::CONNECT_TIMEOUT;
use msrp_smol::runtime::{BoxFuture, BoxStream, ByteStream, Listener, MAX_WRITE_PARTS, ReadBuffer, Runtime};

/// Bytes asked for per socket read.
const READ_SIZE: usize = 256 * 1024;
/// Bytes allocated at once for reads.
const READ_BUFFER: usize = READ_SIZE;
/// Earlier read buffers kept for reuse during a transfer: as many as the queued reads
/// and the driver's queued events (a read's worth each at most) may still hold pieces of.
const READ_BUFFERS_KEPT: usize = READ_QUEUE + msrp_smol::EVENT_QUEUE + 8;
/// Reads queued for the driver before the reader thread waits: the reader runs ahead a
/// little instead of parking after every read.
const READ_QUEUE: usize = 4;
/// Writes queued for the writer thread before a write waits: a few chunks' parts.
const WRITE_QUEUE: usize = 16;
/// Most bytes one copying write hands to the writer thread.
const WRITE_PIECE: usize = 120 * 1024;

/// Plain threads as a runtime: a spawned task gets a thread of its own that runs it with
/// `futures::executor::block_on`; one timer thread serves every deadline; a socket's
/// blocking reads and writes happen on two threads of its own, behind channels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Threads;

impl Runtime for Threads {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        thread::spawn(move || futures::executor::block_on(future));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(Sleep { deadline, registered: None })
    }

    fn connect(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let (sender, result) = oneshot::channel();
            thread::spawn(move || {
                let _ = sender.send(TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).and_then(ThreadStream::new));
            });
            let stream = result.await.map_err(|_| io::Error::other("the connecting thread failed"))??;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move { Ok(Box::new(ThreadListener(TcpListener::bind(address)?)) as Box<dyn Listener>) })
    }
}

/// Deadlines and the wakers waiting for them, served by one thread.
struct Timers {
    waiting: Mutex<Waiting>,
    changed: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// By deadline, then registration order.
    wakers: BTreeMap<(Instant, u64), Waker>,
    registered: u64,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<Timers> = OnceLock::new();
    static THREAD: Once = Once::new();
    let timers = TIMERS.get_or_init(|| Timers { waiting: Mutex::new(Waiting::default()), changed: Condvar::new() });
    THREAD.call_once(|| {
        thread::Builder::new().name("msrp-timers".into()).spawn(move || timers.run()).expect("the timer thread starts");
    });
    timers
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes `waker` at `deadline`; `key` names an earlier registration to replace.
    /// The timer thread is only disturbed when this deadline is now the earliest.
    fn register(&self, deadline: Instant, waker: Waker, key: Option<(Instant, u64)>) -> (Instant, u64) {
        let mut waiting = self.lock();
        if let Some(key) = key {
            waiting.wakers.remove(&key);
        }
        waiting.registered += 1;
        let key = (deadline, waiting.registered);
        let earliest = waiting.wakers.first_key_value().is_none_or(|(first, _)| key < *first);
        waiting.wakers.insert(key, waker);
        if earliest {
            self.changed.notify_one();
        }
        key
    }

    fn cancel(&self, key: (Instant, u64)) {
        self.lock().wakers.remove(&key);
    }

    fn run(&self) {
        let mut waiting = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = waiting.wakers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().wake();
            }
            waiting = match waiting.wakers.first_key_value().map(|((deadline, _), _)| *deadline) {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    self.changed.wait_timeout(waiting, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0
                }
                None => self.changed.wait(waiting).unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

/// Completes at its deadline; its registration leaves with it.
struct Sleep {
    deadline: Instant,
    /// The registration and the waker it wakes.
    registered: Option<((Instant, u64), Waker)>,
}

impl std::future::Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // A driver polls its timer on every turn: the timer thread is only told again
        // when someone else is to be woken.
        if self.registered.as_ref().is_some_and(|(_, waker)| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let key = timers().register(self.deadline, cx.waker().clone(), self.registered.take().map(|(key, _)| key));
        self.registered = Some((key, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            timers().cancel(key);
        }
    }
}

/// A TCP connection whose blocking reads and writes happen on two threads of its own.
/// Bytes cross to and from the driver as they are, without a copy.
struct ThreadStream {
    incoming: mpsc::Receiver<io::Result<Bytes>>,
    leftover: Bytes,
    outgoing: mpsc::Sender<Bytes>,
}

impl ThreadStream {
    fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let mut reader = stream.try_clone()?;
        let writer = stream;
        let (mut read_sender, incoming) = mpsc::channel(READ_QUEUE);
        let (outgoing, write_queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        thread::spawn(move || {
            let mut buffer = ReadBuffer::new(READ_SIZE, READ_BUFFER, READ_BUFFERS_KEPT);
            loop {
                let result = reader.read(buffer.room()).map(|n| buffer.take(n));
                let end = !matches!(&result, Ok(data) if !data.is_empty());
                if futures::executor::block_on(read_sender.send(result)).is_err() || end {
                    return;
                }
            }
        });
        thread::spawn(move || write_all_queued(writer, write_queue));
        Ok(Self { incoming, leftover: Bytes::new(), outgoing })
    }

    /// The next bytes read, or the end (empty) or an error.
    fn poll_next_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        if !self.leftover.is_empty() {
            return Poll::Ready(Ok(std::mem::take(&mut self.leftover)));
        }
        self.incoming.poll_next_unpin(cx).map(|read| read.unwrap_or(Ok(Bytes::new())))
    }

    /// Hands `data` to the writer thread as it is.
    fn poll_queue_write(&mut self, cx: &mut Context<'_>, data: Bytes) -> Poll<io::Result<usize>> {
        let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
        match self.outgoing.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(gone())),
            Poll::Pending => return Poll::Pending,
        }
        let n = data.len();
        Poll::Ready(Pin::new(&mut self.outgoing).start_send(data).map(|()| n).map_err(|_| gone()))
    }
}

/// The writer thread: writes everything queued at once (one system call for a chunk's
/// head, body and end-line), until the queue closes or the socket fails.
fn write_all_queued(mut writer: TcpStream, mut queue: mpsc::Receiver<Bytes>) {
    let mut pending: Vec<Bytes> = Vec::new();
    while let Some(data) = futures::executor::block_on(queue.next()) {
        pending.push(data);
        while pending.len() < MAX_WRITE_PARTS {
            match queue.try_recv() {
                Ok(data) => pending.push(data),
                Err(_) => break,
            }
        }
        let mut slices: Vec<IoSlice<'_>> = pending.iter().map(|data| IoSlice::new(data)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match writer.write_vectored(slices) {
                Ok(0) | Err(_) => {
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
            }
        }
        pending.clear();
    }
    let _ = writer.shutdown(Shutdown::Write);
}

impl ByteStream for ThreadStream {
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, _: &mut ReadBuffer) -> Poll<io::Result<Bytes>> {
        self.poll_next_read(cx)
    }

    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, parts: &[Bytes]) -> Poll<io::Result<usize>> {
        // Every part the queue has room for goes as it is.
        let mut taken = 0;
        for part in parts {
            match self.poll_queue_write(cx, part.clone()) {
                Poll::Ready(Ok(n)) => taken += n,
                Poll::Ready(Err(error)) if taken == 0 => return Poll::Ready(Err(error)),
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        if taken == 0 { Poll::Pending } else { Poll::Ready(Ok(taken)) }
    }
}

impl AsyncRead for ThreadStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut data = match self.poll_next_read(cx) {
            Poll::Ready(Ok(data)) => data,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        };
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data.split_to(n));
        self.leftover = data;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for ThreadStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Copied in pieces small enough for the allocator to recycle (above 128 KiB glibc
        // maps fresh pages for every buffer, and faulting them in costs more than the copy).
        let piece = Bytes::copy_from_slice(&buf[..buf.len().min(WRITE_PIECE)]);
        self.poll_queue_write(cx, piece)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer thread writes as soon as it can; nothing is held here.
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.close_channel();
        Poll::Ready(Ok(()))
    }
}

/// A listening socket whose blocking accept runs on a thread of its own.
struct ThreadListener(TcpListener);

impl Listener for ThreadListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        let listener = self.0.try_clone();
        Box::pin(async move {
            let listener = listener?;
            let (sender, result) = oneshot::channel();
            thread::spawn(move || {
                let accepted = listener.accept().and_then(|(stream, peer)| Ok((ThreadStream::new(stream)?, peer)));
                let _ = sender.send(accepted);
            });
            let (stream, peer) = result.await.map_err(|_| io::Error::other("the accepting thread failed"))??;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }
}
