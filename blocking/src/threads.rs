//! The [`Threads`] runtime: the async layer of `msrp-smol` run on plain threads.
//!
//! A spawned task gets a thread of its own, parked while the task waits. A connection
//! driver woken by a socket's reader thread is polled on that thread instead, once the
//! bytes read are queued: they reach the session without waking the driver's thread.
//! Every hop between threads is a wake-up, and on two cores those cost more than the
//! work they hand over.
//!
//! A socket is a `std::net::TcpStream` with a reader thread, which blocks in `read`,
//! and a writer thread, which writes what would block. On Linux a write the socket
//! takes at once is made by the thread that polls the driver, with a non-blocking
//! `sendmsg` (std has no non-blocking send on a socket another thread blocks in). One
//! timer thread serves every deadline.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncRead, AsyncWrite};
use msrp_smol::runtime::{BoxFuture, BoxStream, ByteStream, Listener, MAX_WRITE_PARTS, ReadBuffer, Runtime};

/// Bytes asked for per socket read: large, as every read that brings chunks wakes the
/// application for them (a hop between threads), and a read holds its buffer until the
/// application is done with it (at most `READ_QUEUE + EVENT_QUEUE` reads, 34 MiB).
const READ_SIZE: usize = 512 * 1024;
/// Bytes asked for per socket read while the connection is not busy: the reader thread
/// waits in its read, holding the buffer, so an idle connection holds only this much; a
/// read that fills it asks for `READ_SIZE` next.
const IDLE_READ_SIZE: usize = 4 * 1024;
/// Read buffers kept for reuse during a transfer.
const READ_BUFFERS_KEPT: usize = 8;
/// Reads queued for the driver before the reader thread waits: the reader runs ahead a
/// little instead of parking after every read.
const READ_QUEUE: usize = 4;
/// Bytes queued for the writer thread before a write waits: a few chunks.
const WRITE_QUEUE: usize = 1024 * 1024;
/// Most bytes one copying write hands to the writer thread.
const WRITE_PIECE: usize = 120 * 1024;

/// Plain threads as a runtime: a spawned task gets a thread of its own (a connection
/// driver is also polled by the socket's reader thread when bytes arrive); one timer
/// thread serves every deadline; a socket's blocking reads and writes happen on two
/// threads of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Threads;

impl Runtime for Threads {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        Task::start(future, false);
    }

    fn spawn_driver(&self, future: BoxFuture<'static, ()>) {
        Task::start(future, true);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(Sleep { deadline, registered: None })
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            // The system's resolver blocks: on a thread of its own, as a connect.
            let (sender, result) = oneshot::channel();
            thread::spawn(move || {
                let _ = sender.send((host.as_str(), port).to_socket_addrs().map(Iterator::collect));
            });
            result.await.map_err(|_| io::Error::other("the resolving thread failed"))?
        })
    }

    fn connect(&self, address: SocketAddr, timeout: Duration) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let (sender, result) = oneshot::channel();
            thread::spawn(move || {
                let _ = sender.send(TcpStream::connect_timeout(&address, timeout).and_then(ThreadStream::new));
            });
            let stream = result.await.map_err(|_| io::Error::other("the connecting thread failed"))??;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn listen(&self, address: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move { Ok(Box::new(ThreadListener(TcpListener::bind(address)?)) as Box<dyn Listener>) })
    }
}

/// A spawned task. Its own thread polls it when it is woken from elsewhere; a
/// connection driver woken by a socket's reader thread (or by a driver) is polled by that
/// thread instead, once it is done with what it was doing, so bytes read reach the
/// session without a hop to another thread.
struct Task {
    future: Mutex<Option<BoxFuture<'static, ()>>>,
    /// Woken since its last poll began.
    notified: AtomicBool,
    /// The task's own thread, set by that thread before the first poll.
    thread: OnceLock<Thread>,
    /// A connection driver: it may be polled by the thread that woke it.
    driver: bool,
}

thread_local! {
    /// Drivers woken by this thread while it holds wakes back: it polls them itself.
    static WOKEN_HERE: RefCell<Option<Vec<Arc<Task>>>> = const { RefCell::new(None) };
}

impl Task {
    fn new(future: BoxFuture<'static, ()>, driver: bool) -> Arc<Self> {
        Arc::new(Self {
            future: Mutex::new(Some(future)),
            notified: AtomicBool::new(false),
            thread: OnceLock::new(),
            driver,
        })
    }

    /// Starts the task's own thread, which polls it first.
    fn start(future: BoxFuture<'static, ()>, driver: bool) {
        let task = Self::new(future, driver);
        spawn_named(if driver { "msrp-driver" } else { "msrp-task" }, move || {
            let _ = task.thread.set(thread::current());
            // Other tasks may block in a poll (a file read, an application's callback),
            // so they never hold a driver's wake back.
            let poll = || if task.driver { polling_woken_drivers(|| task.poll_here()) } else { task.poll_here() };
            while !poll() {
                thread::park();
            }
        });
    }

    /// Polls the task unless another thread is polling it, and again while it was woken
    /// meanwhile. True once it has finished.
    fn poll_here(self: &Arc<Self>) -> bool {
        loop {
            let mut slot = match self.future.try_lock() {
                Ok(slot) => slot,
                // Whoever polls it now sees `notified` once done.
                Err(TryLockError::WouldBlock) => return false,
                Err(TryLockError::Poisoned(_)) => return true,
            };
            let Some(future) = slot.as_mut() else { return true };
            self.notified.store(false, Ordering::SeqCst);
            let waker = Waker::from(Arc::clone(self));
            let polled =
                panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut Context::from_waker(&waker))));
            // A task that panicked ends as if it had finished; the thread goes on.
            if !matches!(polled, Ok(Poll::Pending)) {
                *slot = None;
                // Its own thread may be waiting to be woken: it ends now.
                if let Some(thread) = self.thread.get() {
                    thread.unpark();
                }
                return true;
            }
            drop(slot);
            if !self.notified.load(Ordering::SeqCst) {
                return false;
            }
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notified.store(true, Ordering::SeqCst);
        let held_back = self.driver
            && WOKEN_HERE
                .try_with(|woken| match woken.borrow_mut().as_mut() {
                    Some(woken) => {
                        if !woken.iter().any(|task| Arc::ptr_eq(task, self)) {
                            woken.push(Arc::clone(self));
                        }
                        true
                    }
                    None => false,
                })
                .unwrap_or(false);
        if !held_back {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }
}

/// Runs `work` holding back this thread's wakes of connection drivers, then polls those
/// drivers here (and the drivers they wake in turn). `work` must not wait for a driver:
/// a held-back wake is only served once `work` returns.
fn polling_woken_drivers<T>(work: impl FnOnce() -> T) -> T {
    let outer = WOKEN_HERE.with(|woken| woken.borrow_mut().replace(Vec::new()));
    let result = work();
    loop {
        let woken = WOKEN_HERE.with(|woken| woken.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default());
        if woken.is_empty() {
            break;
        }
        for task in woken {
            task.poll_here();
        }
    }
    WOKEN_HERE.with(|woken| *woken.borrow_mut() = outer);
    result
}

/// Starts a thread with a name that tells what it does (seen in debuggers and profilers).
fn spawn_named(name: &str, work: impl FnOnce() + Send + 'static) {
    thread::Builder::new().name(name.into()).spawn(work).expect("a thread starts");
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
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
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
                    self.changed.wait_timeout(waiting, wait).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.changed.wait(waiting).unwrap_or_else(PoisonError::into_inner),
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
    outgoing: Arc<WriteQueue>,
    /// The socket: for writes it takes at once, and to end the reads and writes of the
    /// threads when the stream is dropped.
    socket: TcpStream,
}

/// What the driver hands to the writer thread. The driver is woken for more room only
/// once the writer has brought the queue down to half of [`WRITE_QUEUE`], not for every
/// write: each wake-up is a hop between threads.
#[derive(Default)]
struct WriteQueue {
    state: Mutex<WriteState>,
    /// The writer thread waits here for parts.
    work: Condvar,
}

#[derive(Default)]
struct WriteState {
    parts: Vec<Bytes>,
    /// Bytes queued or being written.
    bytes: usize,
    /// No more parts will come: the writer writes what is queued and closes its side.
    closing: bool,
    writer: Writer,
    /// The driver, waiting for room or for the writer to close its side.
    room: Option<Waker>,
}

/// What the writer thread is doing.
#[derive(Default, PartialEq, Eq)]
enum Writer {
    #[default]
    Writing,
    /// Waiting for parts (on `WriteQueue::work`).
    Waiting,
    /// It closed its side after writing everything.
    Closed,
    /// Writing failed: the connection is gone.
    Failed,
}

impl WriteQueue {
    fn lock(&self) -> MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues every part while the queue has room.
    fn poll_queue(&self, cx: &mut Context<'_>, parts: &[Bytes]) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        if state.writer == Writer::Failed || state.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if state.bytes >= WRITE_QUEUE {
            state.room = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n: usize = parts.iter().map(Bytes::len).sum();
        state.parts.extend(parts.iter().cloned());
        state.bytes += n;
        self.wake_writer(state);
        Poll::Ready(Ok(n))
    }

    /// The writer writes what is queued and then closes its side; ready once it did (or
    /// failed), else `cx` (if any) is woken when it does.
    fn poll_close(&self, cx: Option<&mut Context<'_>>) -> Poll<()> {
        let mut state = self.lock();
        state.closing = true;
        if matches!(state.writer, Writer::Closed | Writer::Failed) {
            return Poll::Ready(());
        }
        if let Some(cx) = cx {
            state.room = Some(cx.waker().clone());
        }
        self.wake_writer(state);
        Poll::Pending
    }

    /// Wakes the writer thread if it waits for parts.
    fn wake_writer(&self, mut state: MutexGuard<'_, WriteState>) {
        if state.writer == Writer::Waiting {
            state.writer = Writer::Writing;
            drop(state);
            self.work.notify_one();
        }
    }

    /// The writer thread's next parts; empty once the queue is closed and written.
    fn next_parts(&self) -> Vec<Bytes> {
        let mut state = self.lock();
        while state.parts.is_empty() && !state.closing {
            state.writer = Writer::Waiting;
            state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.writer = Writer::Writing;
        std::mem::take(&mut state.parts)
    }

    /// The writer wrote `n` bytes; or it `ended` (closed its side, or failed).
    fn written(&self, n: usize, ended: Option<Writer>) {
        let mut state = self.lock();
        state.bytes -= n;
        if let Some(end) = ended {
            state.writer = end;
        }
        let waker =
            if state.writer != Writer::Writing || state.bytes <= WRITE_QUEUE / 2 { state.room.take() } else { None };
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl ThreadStream {
    fn new(stream: TcpStream) -> io::Result<Self> {
        // Only an optimisation, and it fails on a connection the peer already reset
        // (EINVAL on macOS): an accepted connection's error must not read as the listener's.
        let _ = stream.set_nodelay(true);
        let mut reader = stream.try_clone()?;
        let socket = stream.try_clone()?;
        let writer = stream;
        let (mut read_sender, incoming) = mpsc::channel(READ_QUEUE);
        let outgoing = Arc::new(WriteQueue::default());
        spawn_named("msrp-read", move || {
            let mut buffer = ReadBuffer::new(READ_SIZE, READ_BUFFERS_KEPT).with_idle_size(IDLE_READ_SIZE);
            loop {
                let mut result = reader.read(buffer.room()).map(|n| buffer.take(n));
                let end = !matches!(&result, Ok(data) if !data.is_empty());
                // The driver woken by the bytes is polled on this thread.
                loop {
                    match polling_woken_drivers(|| read_sender.try_send(result)) {
                        Ok(()) => break,
                        Err(full) if full.is_full() => {
                            result = full.into_inner();
                            let room =
                                futures::executor::block_on(futures::future::poll_fn(|cx| read_sender.poll_ready(cx)));
                            if room.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                if end {
                    return;
                }
            }
        });
        let queue = Arc::clone(&outgoing);
        spawn_named("msrp-write", move || write_all_queued(writer, &queue));
        Ok(Self { incoming, leftover: Bytes::new(), outgoing, socket })
    }

    /// The next bytes read, or the end (empty) or an error.
    fn poll_next_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        if !self.leftover.is_empty() {
            return Poll::Ready(Ok(std::mem::take(&mut self.leftover)));
        }
        self.incoming.poll_next_unpin(cx).map(|read| read.unwrap_or(Ok(Bytes::new())))
    }

    /// Writes what the socket takes at once, on the calling thread, when the writer
    /// thread has nothing left to write; `None` when the writer thread is to take it
    /// (the socket is full, or not on Linux). Bytes written here are still in the cache
    /// of the thread that made them, and the writer thread is not woken.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn write_now(&self, parts: &[Bytes]) -> Option<io::Result<usize>> {
        use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
        {
            // Only the driver queues, so an idle writer stays idle while this writes.
            let state = self.outgoing.lock();
            if state.bytes != 0 || state.closing || state.writer == Writer::Failed {
                return None;
            }
        }
        let slices: Vec<IoSlice<'_>> = parts.iter().take(MAX_WRITE_PARTS).map(|part| IoSlice::new(part)).collect();
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        match sendmsg(&self.socket, &slices, &mut SendAncillaryBuffer::default(), flags) {
            Ok(n) if n > 0 => Some(Ok(n)),
            // Full (or interrupted): the writer thread waits for room.
            Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
            Err(error) => Some(Err(error.into())),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn write_now(&self, _: &[Bytes]) -> Option<io::Result<usize>> {
        None
    }
}

impl Drop for ThreadStream {
    /// The reader thread stops reading: nobody wants what comes. Bytes still queued are
    /// written and the writer closes its side; but when the driver gave up on them (the
    /// peer does not read), the writer thread stops too.
    fn drop(&mut self) {
        let how = match self.outgoing.poll_close(None) {
            Poll::Ready(()) => Shutdown::Read,
            Poll::Pending if self.outgoing.lock().bytes == 0 => Shutdown::Read,
            Poll::Pending => Shutdown::Both,
        };
        let _ = self.socket.shutdown(how);
    }
}

/// The writer thread: writes everything queued at once (one system call for a chunk's
/// head, body and end-line, and for as many chunks as are queued), until the queue
/// closes or the socket fails.
fn write_all_queued(mut writer: TcpStream, queue: &WriteQueue) {
    loop {
        let parts = queue.next_parts();
        if parts.is_empty() {
            let _ = writer.shutdown(Shutdown::Write);
            queue.written(0, Some(Writer::Closed));
            return;
        }
        for batch in parts.chunks(MAX_WRITE_PARTS) {
            let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|data| IoSlice::new(data)).collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                match writer.write_vectored(slices) {
                    Ok(0) | Err(_) => {
                        queue.written(0, Some(Writer::Failed));
                        let _ = writer.shutdown(Shutdown::Both);
                        return;
                    }
                    Ok(n) => {
                        IoSlice::advance_slices(&mut slices, n);
                        queue.written(n, None);
                    }
                }
            }
        }
    }
}

impl ByteStream for ThreadStream {
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, _: &mut ReadBuffer) -> Poll<io::Result<Bytes>> {
        self.poll_next_read(cx)
    }

    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, parts: &[Bytes]) -> Poll<io::Result<usize>> {
        if let Some(written) = self.write_now(parts) {
            return Poll::Ready(written);
        }
        self.outgoing.poll_queue(cx, parts)
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
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Copied in pieces small enough for the allocator to recycle (above 128 KiB glibc
        // maps fresh pages for every buffer, and faulting them in costs more than the copy).
        let piece = Bytes::copy_from_slice(&buf[..buf.len().min(WRITE_PIECE)]);
        self.outgoing.poll_queue(cx, &[piece])
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer thread writes as soon as it can; nothing is held here.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.poll_close(Some(cx)).map(Ok)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task whose future counts its polls and runs `on_poll` with the poll's number;
    /// it finishes when `on_poll` says so.
    fn counting_task(
        driver: bool,
        on_poll: impl Fn(usize, &mut Context<'_>) -> bool + Send + 'static,
    ) -> (Arc<Task>, Arc<AtomicUsize>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&polls);
        let future = futures::future::poll_fn(move |cx| {
            let poll = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if on_poll(poll, cx) { Poll::Ready(()) } else { Poll::Pending }
        });
        (Task::new(Box::pin(future), driver), polls)
    }

    fn finished(task: &Task) -> bool {
        task.future.lock().unwrap().is_none()
    }

    #[test]
    fn a_driver_woken_by_a_runtime_thread_is_polled_there_once_its_work_is_done() {
        let (task, polls) = counting_task(true, |_, _| false);
        let waker = Waker::from(Arc::clone(&task));
        let polls_during_work = polling_woken_drivers(|| {
            waker.wake_by_ref();
            waker.wake_by_ref();
            polls.load(Ordering::SeqCst)
        });
        assert_eq!(polls_during_work, 0, "not polled inside the work (it may hold locks)");
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once after it, on this thread");
    }

    #[test]
    fn other_tasks_are_left_to_their_own_threads() {
        let (task, polls) = counting_task(false, |_, _| false);
        polling_woken_drivers(|| Waker::from(Arc::clone(&task)).wake());
        assert_eq!(polls.load(Ordering::SeqCst), 0, "a task that may block is not polled here");
        assert!(task.notified.load(Ordering::SeqCst), "its own thread will poll it");
    }

    #[test]
    fn a_task_blocking_on_a_driver_it_woke_is_answered() {
        // An application's callback runs in a task's poll and may block there (here on a
        // std channel) until a driver it woke has done something.
        let (to_driver, from_task) = oneshot::channel::<()>();
        let (to_task, from_driver) = std::sync::mpsc::channel();
        Threads.spawn_driver(Box::pin(async move {
            if from_task.await.is_ok() {
                let _ = to_task.send(());
            }
        }));
        let (done, answered) = std::sync::mpsc::channel();
        Threads.spawn(Box::pin(async move {
            let _ = to_driver.send(());
            let _ = done.send(from_driver.recv_timeout(std::time::Duration::from_secs(30)).is_ok());
        }));
        assert_eq!(answered.recv_timeout(std::time::Duration::from_secs(60)), Ok(true));
    }

    #[test]
    fn a_wake_outside_a_runtime_thread_leaves_the_driver_to_its_own_thread() {
        let (task, polls) = counting_task(true, |_, _| false);
        Waker::from(Arc::clone(&task)).wake();
        assert_eq!(polls.load(Ordering::SeqCst), 0);
        assert!(task.notified.load(Ordering::SeqCst));
    }

    #[test]
    fn a_driver_woken_while_polled_is_polled_again() {
        // The first poll wakes the task (as a driver does when it has more to do).
        let (task, polls) = counting_task(true, |poll, cx| {
            if poll == 1 {
                cx.waker().wake_by_ref();
            }
            poll == 2
        });
        assert!(polling_woken_drivers(|| task.poll_here()), "finished on its second poll");
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert!(finished(&task));
    }

    #[test]
    fn a_task_being_polled_elsewhere_is_not_polled_twice() {
        let (task, polls) = counting_task(true, |_, _| false);
        let held = task.future.lock().unwrap();
        assert!(!task.poll_here(), "the other poller sees `notified` when done");
        drop(held);
        assert_eq!(polls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_panicking_task_ends_and_the_polling_thread_goes_on() {
        let (task, _) = counting_task(true, |_, _| panic!("a bug in a task"));
        assert!(task.poll_here(), "it ended");
        assert!(finished(&task));
    }

    #[test]
    fn a_started_task_runs_on_its_own_thread_and_is_woken_from_anywhere() {
        let (sender, receiver) = oneshot::channel::<u32>();
        let (done, finished) = std::sync::mpsc::channel();
        Threads.spawn_driver(Box::pin(async move {
            let value = receiver.await.unwrap_or(0);
            let _ = done.send((value, thread::current().name().map(str::to_owned)));
        }));
        // A plain thread (not one of the runtime's) wakes it.
        thread::spawn(move || sender.send(7)).join().unwrap().unwrap();
        let (value, name) = finished.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(value, 7);
        assert_eq!(name.as_deref(), Some("msrp-driver"));
    }
}
