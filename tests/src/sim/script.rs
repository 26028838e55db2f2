//! What the application on each simulated session does: random messages (whole,
//! streamed with or without a known size, files), streamed writes that honour
//! `Writable`, aborts, and a shutdown or close at a random moment.

use std::time::{Duration, Instant};

use bytes::Bytes;
use msrp_core::HeaderName;
use msrp_core::header::Headers;
use msrp_core::outbox::{MessageOptions, OutboxError, OutgoingId};
use msrp_core::session::{OutgoingFile, SendError};

use super::invariants::{FailureReportMode, SentMessage, Violation};
use super::rng::SimRng;
use super::{Sim, partner};

/// Media types the scripts send; the receivers of some runs accept only `text/*`.
pub const CONTENT_TYPES: [&str; 6] =
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

/// The application actions, performed by the simulation on a peer's session.
impl Sim {
    pub(super) fn script_action(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let script = &mut self.peers[p].script;
        script.next_at = None;
        if script.end_at.is_some_and(|end_at| now >= end_at) {
            return self.end_script(p);
        }
        script.actions_left = script.actions_left.saturating_sub(1);
        match self.rng.below(100) {
            0..45 => self.send_whole(p)?,
            45..65 => self.start_stream(p)?,
            65..80 => {
                let open: Vec<OutgoingId> =
                    self.peers[p].script.streams.iter().filter(|s| !s.blocked).map(|s| s.id).collect();
                if !open.is_empty() {
                    let id = open[self.rng.index(open.len())];
                    self.write_stream(p, id, false)?;
                }
            }
            80..92 => self.abort_one(p)?,
            _ => {}
        }
        let script = &mut self.peers[p].script;
        script.schedule_next(now, &mut self.rng);
        Ok(())
    }

    fn end_script(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        self.app_ended(p);
        if self.rng.chance(50) {
            // The application writes what its streams still have before it ends.
            let ids: Vec<OutgoingId> = self.peers[p].script.streams.iter().map(|s| s.id).collect();
            for id in ids {
                self.write_stream(p, id, true)?;
            }
        }
        let ending = self.peers[p].script.ending;
        let name = self.peers[p].name.clone();
        self.log(format!("{name} script: {ending:?}"));
        let Some(session) = self.peers[p].session.as_mut() else { return Ok(()) };
        match ending {
            Ending::Shutdown => {
                session.shutdown(now);
                // A shutdown aborts the streams the application has not finished.
                for stream in std::mem::take(&mut self.peers[p].script.streams) {
                    self.oracle.abort_accepted(p, stream.id);
                }
            }
            Ending::Close => session.close(now),
        }
        Ok(())
    }

    fn send_whole(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let peer = &mut self.peers[p];
        peer.script.made += 1;
        let plan = plan_message(&mut self.rng, &peer.name, peer.script.made, peer.script.max_message);
        let options = MessageOptions {
            message_id: Some(plan.message_id.clone()),
            headers: plan.headers.clone(),
            ..MessageOptions::default()
        };
        let Some(session) = peer.session.as_mut() else { return Ok(()) };
        let result = session.send_message(now, options, plan.body.clone());
        let line = format!(
            "{} send_message {} {} B {} (failure reports {:?}, success report {}): {result:?}",
            peer.name,
            plan.message_id,
            plan.body.len(),
            plan.content_type,
            plan.failure_report,
            plan.success_report,
        );
        self.log(line);
        match result {
            Ok(id) => {
                self.register(p, id, &plan, "send_message");
                Ok(())
            }
            Err(SendError::Closed | SendError::ShuttingDown) => Ok(()),
            Err(error) => Err(format!("{}: send_message refused: {error}", self.peers[p].name)),
        }
    }

    fn register(&mut self, p: usize, outgoing: OutgoingId, plan: &MessagePlan, how: &'static str) {
        let mut message = SentMessage::new(p, outgoing, partner(p), plan);
        message.how = how;
        self.oracle.register(message);
        let pair = self.peers[p].pair;
        if self.worlds[pair].ended {
            // A message started after an application of the pair ended may be cut off.
            self.worlds[pair].cut = true;
        }
    }

    fn start_stream(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let kind = self.rng.below(3);
        let eager = self.rng.chance(70);
        let peer = &mut self.peers[p];
        peer.script.made += 1;
        let plan = plan_message(&mut self.rng, &peer.name, peer.script.made, peer.script.max_message);
        let len = plan.body.len() as u64;
        let Some(session) = peer.session.as_mut() else { return Ok(()) };
        let (what, result) = match kind {
            0 | 1 => {
                let total = (kind == 0).then_some(len);
                let options = MessageOptions {
                    message_id: Some(plan.message_id.clone()),
                    headers: plan.headers.clone(),
                    total,
                    position: 0,
                };
                (
                    if kind == 0 { "start_message" } else { "start_message (size unknown)" },
                    session.start_message(now, options),
                )
            }
            _ => {
                let file = OutgoingFile {
                    size: len,
                    content_type: Some(plan.content_type.to_owned()),
                    position: 0,
                    message_id: Some(plan.message_id.clone()),
                    headers: plan.headers.clone(),
                };
                ("send_file", session.send_file(now, &file))
            }
        };
        let line = format!(
            "{} {what} {} {len} B {} (failure reports {:?}, success report {}): {result:?}",
            peer.name, plan.message_id, plan.content_type, plan.failure_report, plan.success_report
        );
        self.log(line);
        match result {
            Ok(id) => {
                self.register(p, id, &plan, what);
                self.peers[p].script.streams.push(Stream { id, body: plan.body, written: 0, blocked: false, eager });
                self.write_stream(p, id, eager)
            }
            Err(SendError::Closed | SendError::ShuttingDown) => Ok(()),
            Err(error) => Err(format!("{}: {what} refused: {error}", self.peers[p].name)),
        }
    }

    /// Writes the next piece of a stream (every piece the engine takes when `eager`),
    /// and finishes it once all is written.
    pub(super) fn write_stream(&mut self, p: usize, id: OutgoingId, eager: bool) -> Result<(), Violation> {
        let now = self.now;
        loop {
            let peer = &mut self.peers[p];
            let Some(index) = peer.script.streams.iter().position(|stream| stream.id == id) else { return Ok(()) };
            let Some(session) = peer.session.as_mut() else { return Ok(()) };
            let stream = &mut peer.script.streams[index];
            let remaining = stream.body.len() - stream.written;
            if remaining == 0 {
                let result = session.finish_message(now, id);
                let line = format!("{} finish_message {id:?}: {result:?}", peer.name);
                peer.script.streams.remove(index);
                self.log(line);
                return match result {
                    Ok(()) | Err(SendError::Closed | SendError::Outbox(OutboxError::UnknownMessage(_))) => Ok(()),
                    Err(error) => Err(format!("{}: finish_message refused: {error}", self.peers[p].name)),
                };
            }
            let len = piece_len(&mut self.rng, remaining);
            let piece = stream.body.slice(stream.written..stream.written + len);
            let result = session.write_message(now, id, piece);
            let line = format!("{} write_message {id:?} {len} B: {result:?}", peer.name);
            match result {
                Ok(taken) => {
                    stream.written += taken;
                    if taken < len {
                        stream.blocked = true;
                    }
                }
                Err(SendError::Blocked) => stream.blocked = true,
                Err(SendError::Closed | SendError::Outbox(OutboxError::UnknownMessage(_))) => {
                    peer.script.streams.remove(index);
                }
                Err(error) => return Err(format!("{}: write_message refused: {error}", peer.name)),
            }
            let blocked = peer.script.streams.get(index).is_none_or(|stream| stream.id != id || stream.blocked);
            let done = peer.script.streams.get(index).is_some_and(|stream| stream.written == stream.body.len());
            self.log(line);
            if blocked || (!eager && !done) {
                return Ok(());
            }
        }
    }

    fn abort_one(&mut self, p: usize) -> Result<(), Violation> {
        let now = self.now;
        let open: Vec<OutgoingId> = self
            .oracle
            .messages()
            .iter()
            .filter(|m| m.sender == p && m.outcome.is_none())
            .map(|m| m.outgoing)
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let id = open[self.rng.index(open.len())];
        let peer = &mut self.peers[p];
        let Some(session) = peer.session.as_mut() else { return Ok(()) };
        let result = session.abort_message(now, id);
        let line = format!("{} abort_message {id:?}: {result:?}", peer.name);
        self.log(line);
        match result {
            Ok(()) => {
                self.oracle.abort_accepted(p, id);
                self.peers[p].script.streams.retain(|stream| stream.id != id);
                Ok(())
            }
            Err(SendError::Closed | SendError::Outbox(OutboxError::UnknownMessage(_))) => Ok(()),
            Err(error) => Err(format!("{}: abort_message refused: {error}", self.peers[p].name)),
        }
    }
}
