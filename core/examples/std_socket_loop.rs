//! One MSRP session over a `std` TCP socket: the run loop of `msrp_core::session`'s docs.
//!
//! `main` connects to a peer listening on 127.0.0.1:2856, sends "Hello" and shuts the
//! session down. `drive` is the loop itself; `core/tests/run_loop.rs` runs the same
//! function on both ends of a loopback connection.
//!
//! A `std` socket can wait for a read with a timeout but cannot wait for "readable or
//! writable": while bytes wait for room the loop looks again every few milliseconds. An
//! adapter on a readiness API (mio, an async runtime: `msrp-smol`'s driver) waits for both.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use msrp_core::header::HeaderName;
use msrp_core::outbox::MessageOptions;
use msrp_core::session::{Event, Input, Output, Role, Session, SessionConfig, SessionError};
use msrp_core::{IdGenerator, Uri};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local: Uri = "msrp://127.0.0.1:2855/alice1234;tcp".parse()?;
    let remote: Uri = "msrp://127.0.0.1:2856/bob5678;tcp".parse()?;
    let stream = TcpStream::connect("127.0.0.1:2856")?;
    let config = SessionConfig::new(Role::Active, vec![local], vec![remote]);
    let mut session = Session::new(config, IdGenerator::seed_from_u64(7), Instant::now())?;
    session.handle_input(Instant::now(), Input::Connected);
    let ended = drive(stream, &mut session, usize::MAX, |session, event| match event {
        Event::Bound => {
            let mut options = MessageOptions::default();
            options.headers.set(HeaderName::ContentType, "text/plain");
            if let Err(error) = session.send_message(Instant::now(), options, Bytes::from_static(b"Hello")) {
                eprintln!("the message was not sent: {error}");
            }
            session.shutdown(Instant::now());
        }
        event => println!("{event:?}"),
    })?;
    match ended {
        Some(reason) => eprintln!("the session ended: {reason}"),
        None => eprintln!("the session ended"),
    }
    Ok(())
}

/// Runs `session` on `stream` until it ends, handing every event but the last to
/// `on_event`; returns why the session ended (`None`: the application closed it).
///
/// `max_write` caps the bytes offered to one write call (`usize::MAX`: no cap). A real
/// program passes `usize::MAX`; a test passes a small cap to make every write partial,
/// which a loopback socket's large buffer would otherwise hardly ever do.
pub(crate) fn drive(
    mut stream: TcpStream,
    session: &mut Session,
    max_write: usize,
    mut on_event: impl FnMut(&mut Session, Event),
) -> io::Result<Option<SessionError>> {
    // Transmitted bytes the socket has not taken yet, in order.
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        // 1. Drain: queue the bytes, hand out the events.
        let mut ended = None;
        while let Some(output) = session.poll_output(Instant::now()) {
            match output {
                Output::Transmit(transmit) => {
                    queue.extend(transmit.parts.into_iter().filter(|part| !part.is_empty()));
                }
                Output::Event(Event::Closed { reason }) => ended = Some(reason),
                Output::Event(event) => on_event(session, event),
                // Comes only after `Event::Closed`, which ends the loop below.
                Output::Close => {}
            }
        }
        if let Some(reason) = ended {
            // 4. Write what is left, for at most the shutdown timeout, then close.
            stream.set_nonblocking(false)?;
            stream.set_write_timeout(Some(session.config().shutdown_timeout))?;
            // The peer may not read it: a failure here changes nothing.
            let _ = write_some(&mut stream, &mut queue, max_write);
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(reason);
        }
        // 2. Write what the socket takes now, and report exactly that.
        stream.set_nonblocking(true)?;
        match write_some(&mut stream, &mut queue, max_write) {
            Ok(0) => {}
            Ok(taken) => {
                session.handle_input(Instant::now(), Input::Written(taken));
                // Room was made: the session may have more to transmit.
                continue;
            }
            Err(_) => {
                queue.clear();
                session.handle_input(Instant::now(), Input::Closed);
                continue;
            }
        }
        // 3. Wait for bytes, at most until the next timeout (a few milliseconds while
        // bytes wait for room).
        let now = Instant::now();
        let next = session.poll_timeout();
        let mut wait = next.map_or(Duration::from_secs(60), |at| at.saturating_duration_since(now));
        if !queue.is_empty() {
            wait = wait.min(Duration::from_millis(5));
        }
        if !wait.is_zero() {
            if session.wants_read() {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(wait))?;
                match stream.read(&mut buffer) {
                    Ok(0) => session.handle_input(Instant::now(), Input::Closed),
                    Ok(n) => {
                        let data = Bytes::copy_from_slice(&buffer[..n]);
                        session.handle_input(Instant::now(), Input::Received(data));
                    }
                    // No bytes within `wait` (Windows says TimedOut, Unix WouldBlock).
                    Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => session.handle_input(Instant::now(), Input::Closed),
                }
            } else {
                // The session pauses reading until the peer reads our responses.
                std::thread::sleep(wait);
            }
        }
        // Run the timers that are due (a call with nothing due does nothing).
        session.handle_timeout(Instant::now());
    }
}

/// Writes from the front of `queue` until the queue is empty or the socket would block
/// (or its write timeout passed), offering at most `max_write` bytes per call; returns
/// how many bytes the socket took. A piece written in part keeps its rest at the front.
fn write_some(stream: &mut TcpStream, queue: &mut VecDeque<Bytes>, max_write: usize) -> io::Result<usize> {
    let mut taken = 0;
    while !queue.is_empty() {
        let result = {
            let mut slices: Vec<IoSlice<'_>> = Vec::new();
            let mut room = max_write;
            for part in queue.iter().take(32) {
                if room == 0 {
                    break;
                }
                let offered = part.len().min(room);
                slices.push(IoSlice::new(&part[..offered]));
                room -= offered;
            }
            stream.write_vectored(&slices)
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                taken += n;
                while n > 0 {
                    let front = &mut queue[0];
                    let part = n.min(front.len());
                    front.advance(part);
                    n -= part;
                    if front.is_empty() {
                        queue.pop_front();
                    }
                }
            }
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(taken)
}
