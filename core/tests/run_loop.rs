//! The run loop of `msrp_core::session`'s docs, run: the example
//! `examples/std_socket_loop.rs` compiled here as it is, on both ends of a loopback
//! connection.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::header::HeaderName;
use msrp_core::outbox::MessageOptions;
use msrp_core::session::{Event, Input, MessageOutcome, ReassemblyLimits, Role, Session, SessionConfig, SessionError};
use msrp_core::{IdGenerator, Uri};

#[expect(dead_code, reason = "its `main` runs only as the example")]
#[path = "../examples/std_socket_loop.rs"]
mod std_socket_loop;

const ALICE: &str = "msrp://127.0.0.1:2855/alice1234;tcp";
const BOB: &str = "msrp://127.0.0.1:2856/bob5678;tcp";

/// Bytes offered to one write call: small and odd, so that writes end inside heads,
/// bodies and end-lines alike and every transmit is written in several parts.
const MAX_WRITE: usize = 997;

fn uri(text: &str) -> Uri {
    text.parse().expect("valid URI")
}

/// Short timers, so that a failure ends the test in seconds instead of hanging it.
fn config(role: Role, local: &str, remote: &str) -> SessionConfig {
    let mut config = SessionConfig::new(role, vec![uri(local)], vec![uri(remote)]);
    config.bind_timeout = Duration::from_secs(5);
    config.response_timeout = Duration::from_secs(5);
    config.shutdown_timeout = Duration::from_secs(5);
    config.write_stall_timeout = Duration::from_secs(5);
    config
}

#[test]
fn issue12_2_10_the_documented_run_loop_delivers_over_a_real_socket_with_partial_writes() {
    // Issue 12 §2.10: write every transmit whole and in order, and report `Written` as the
    // socket takes it (response timers start from the last byte written, R4975-7.1.1-4).
    // With writes capped at `MAX_WRITE` bytes almost every write is partial.
    let text = Bytes::from_static(b"Hello over a real socket");
    let large: Bytes = (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let passive = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut config = config(Role::Passive, BOB, ALICE);
        config.reassembly = Some(ReassemblyLimits { max_message_size: 1 << 20, max_open_messages: 4 });
        let mut session = Session::new(config, IdGenerator::seed_from_u64(2), Instant::now()).expect("session");
        let mut received = Vec::new();
        let ended = std_socket_loop::drive(stream, &mut session, MAX_WRITE, |_, event| {
            if let Event::Incoming(message) = event {
                received.push(message.data);
            }
        });
        (ended.expect("no I/O error"), received)
    });

    let stream = TcpStream::connect(address).expect("connect");
    let mut session =
        Session::new(config(Role::Active, ALICE, BOB), IdGenerator::seed_from_u64(1), Instant::now()).expect("session");
    session.handle_input(Instant::now(), Input::Connected);
    let mut outcomes = Vec::new();
    let messages = [text.clone(), large.clone()];
    let ended = std_socket_loop::drive(stream, &mut session, MAX_WRITE, |session, event| match event {
        Event::Bound => {
            for body in &messages {
                let mut options = MessageOptions::default();
                options.headers.set(HeaderName::ContentType, "application/octet-stream");
                session.send_message(Instant::now(), options, body.clone()).expect("queued");
            }
            session.shutdown(Instant::now());
        }
        Event::MessageDone { outcome, .. } => outcomes.push(outcome),
        _ => {}
    });

    // The active side ends by its shutdown, after both messages were answered; the
    // passive side then sees the connection close.
    assert_eq!(ended.expect("no I/O error"), None);
    assert_eq!(outcomes, [MessageOutcome::Delivered, MessageOutcome::Delivered]);
    let (passive_ended, received) = passive.join().expect("the passive loop did not panic");
    assert_eq!(passive_ended, Some(SessionError::ConnectionClosed));
    assert_eq!(received, [text, large]);
    // Everything transmitted was written and reported.
    assert_eq!(session.unwritten(), 0);
    assert!(session.written() > 200_000);
}
