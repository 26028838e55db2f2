//! What the application on each simulated session does: random messages (whole,
//! streamed with or without a known size, files), streamed writes that honour
//! `Writable`, aborts, and a shutdown or close at a random moment.

use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::HeaderName;
use msrp_core::header::Headers;
use msrp_core::outbox::OutgoingId;

use super::invariants::FailureReportMode;
use super::rng::SimRng;

/// Media types the scripts send; the receivers of some runs accept only `text/*`.
const CONTENT_TYPES: [&str; 6] =
    ["text/plain", "text/html", "application/octet-stream", "image/png", "message/cpim", "application/x-sim"];

/// How a session's application ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `shutdown`: queued messages go out first.
    Shutdown,
    /// `close`: everything pending fails.
    Close,
}

/// One application's plan and progress.
#[derive(Debug)]
pub struct Script {
    /// Actions left before the ending.
    pub actions_left: u32,
    /// Longest pause between two actions.
    pub max_gap: Duration,
    /// How long after its start the application ends the session, and how.
    pub lifetime: Duration,
    pub ending: Ending,
    /// When the next action is due (`None` before the session exists or once it ended).
    pub next_at: Option<Instant>,
    pub end_at: Option<Instant>,
    pub ended: bool,
    /// Streamed messages still being written.
    pub streams: Vec<Stream>,
    /// Messages made so far (for their Message-IDs).
    pub made: u32,
    /// Largest message of this application.
    pub max_message: usize,
}

/// A streamed message the application is writing.
#[derive(Debug)]
pub struct Stream {
    pub id: OutgoingId,
    pub body: Bytes,
    pub written: usize,
    /// `write_message` took less than offered; a `Writable` is awaited.
    pub blocked: bool,
    /// Writes everything it can at once (else one piece per action or `Writable`).
    pub eager: bool,
}

impl Script {
    /// A random plan; `max_message` bounds its message sizes.
    pub fn random(rng: &mut SimRng, max_message: usize) -> Self {
        Self {
            actions_left: rng.below(13) as u32,
            max_gap: rng.millis(1, 3_000),
            lifetime: rng.millis(0, 25_000),
            ending: if rng.chance(80) { Ending::Shutdown } else { Ending::Close },
            next_at: None,
            end_at: None,
            ended: false,
            streams: Vec::new(),
            made: 0,
            max_message,
        }
    }

    /// The session exists from `now`: the first action and the ending get their times.
    pub fn start(&mut self, now: Instant, rng: &mut SimRng) {
        let end_at = now + self.lifetime;
        self.end_at = Some(end_at);
        self.next_at = Some((now + rng.millis(0, self.max_gap.as_millis() as u64)).min(end_at));
    }

    /// Schedules the next action after one at `now`.
    pub fn schedule_next(&mut self, now: Instant, rng: &mut SimRng) {
        let Some(end_at) = self.end_at else { return };
        let next = if self.actions_left == 0 { end_at } else { now + rng.millis(0, self.max_gap.as_millis() as u64) };
        self.next_at = Some(next.min(end_at));
    }
}

/// A message about to be sent.
#[derive(Debug)]
pub struct MessagePlan {
    pub message_id: String,
    pub content_type: &'static str,
    pub headers: Headers,
    pub body: Bytes,
    pub success_report: bool,
    pub failure_report: FailureReportMode,
}

/// A random message of `peer`'s application, at most `max_len` bytes.
pub fn plan_message(rng: &mut SimRng, peer: &str, serial: u32, max_len: usize) -> MessagePlan {
    let len = match rng.below(100) {
        0..40 => rng.below(101),
        40..75 => rng.below(4097),
        75..95 => rng.below(65_537),
        _ => rng.below(400 * 1024 + 1),
    } as usize;
    let len = len.min(max_len);
    let content_type = rng.pick(&CONTENT_TYPES);
    let body = make_body(rng, len, content_type.starts_with("text/"));
    let mut headers = Headers::new();
    headers.set(HeaderName::ContentType, content_type);
    let success_report = rng.chance(30);
    if success_report {
        headers.set(HeaderName::SuccessReport, "yes");
    }
    let failure_report = match rng.below(100) {
        0..70 => FailureReportMode::Absent,
        70..80 => FailureReportMode::Yes,
        80..90 => FailureReportMode::Partial,
        _ => FailureReportMode::No,
    };
    let value = match failure_report {
        FailureReportMode::Absent => None,
        FailureReportMode::Yes => Some("yes"),
        FailureReportMode::Partial => Some("partial"),
        FailureReportMode::No => Some("no"),
    };
    if let Some(value) = value {
        headers.set(HeaderName::FailureReport, value);
    }
    MessagePlan { message_id: format!("{peer}x{serial}"), content_type, headers, body, success_report, failure_report }
}

/// `len` random bytes (printable for text), with end-line look-alikes planted in them
/// so that the receiver's end-line scan is tried on every run.
fn make_body(rng: &mut SimRng, len: usize, text: bool) -> Bytes {
    const TRAP_LEN: usize = 24;
    let mut body = vec![0u8; len];
    rng.fill(&mut body);
    if text {
        for byte in &mut body {
            *byte = b' ' + *byte % 95;
        }
    }
    if len >= TRAP_LEN {
        for _ in 0..rng.below(4) {
            let at = rng.index(len - TRAP_LEN + 1);
            let trap = &mut body[at..at + TRAP_LEN];
            trap[..9].copy_from_slice(b"\r\n-------");
            for byte in &mut trap[9..21] {
                *byte = rng.pick(b"0123456789abcdefXYZ");
            }
            trap[21] = rng.pick(b"$+#");
            trap[22..].copy_from_slice(b"\r\n");
        }
    }
    Bytes::from(body)
}

/// How much to offer in one `write_message`.
pub fn piece_len(rng: &mut SimRng, remaining: usize) -> usize {
    let cap = rng.pick(&[1, 100, 4096, 65_536, usize::MAX]);
    1 + rng.index(remaining.min(cap))
}
