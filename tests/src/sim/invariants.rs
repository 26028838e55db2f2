//! The oracle: what every message sent in a run must come to, checked as events arrive
//! and once more at the end.
//!
//! For each message an application started, the simulation knows its bytes, its sender
//! and its receiver. The receiver's `Incoming` chunks must be those bytes at the offsets
//! their Byte-Range says, each byte at most once, and a `$` chunk only once all of them
//! arrived. The sender gets exactly one `MessageDone`: `Delivered` means the receiver
//! has every byte (when the message asked for a failure response, the default: with
//! `Failure-Report: partial` or `no` the spec makes silence a success, so those
//! messages only need to have been written to the socket whole, or covered by success
//! REPORTs), `Aborted` only after an accepted `abort_message` or a `shutdown` with the
//! stream unfinished (and then the receiver never saw the `$`), and `Failed` only for a
//! reason the world of the seed justifies ([`Context`]): 408 when the link had a fault,
//! a session of the pair ended or was ending while the message was pending; 413 when the
//! receiver reassembles and the message is over its size limit or other messages of the
//! sender were open with it; 415 when the receiver does not accept the message's type.
//! Success REPORTs cover only bytes the receiver has, have a Byte-Range with an end (a
//! total, when given, is the body's length), and a delivered message that asked for them
//! ends fully reported or with `ReportMissing`.
//!
//! Through a relay ([`Oracle::relayed`]) a `200` is the relay's, hop by hop (RFC 4976
//! §7.3): `Delivered` then comes before the receiver has the message, so it is checked at
//! the end instead, and only a receiver whose session closed before the message reached it
//! excuses a loss ([`Oracle::receiver_gone`]); a relay that dropped a connection does not.
//! The relay's `481` (no such session: the peer's connection is gone) is then a failure the
//! world can justify.

use std::collections::BTreeMap;

use bytes::Bytes;
use msrp_core::outbox::OutgoingId;
use msrp_core::session::{MessageOutcome, ReassemblyLimits};
use msrp_core::{Chunk, ContinuationFlag};

use super::script::MessagePlan;

/// Disjoint, sorted half-open byte ranges.
#[derive(Debug, Clone, Default)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Adds `[start, end)`; `false` when part of it was there already.
    pub fn insert(&mut self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        if self.0.iter().any(|&(a, b)| start < b && a < end) {
            return false;
        }
        self.0.push((start, end));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match merged.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
        true
    }

    /// Adds `[start, end)`, overlaps allowed.
    pub fn cover(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut pieces = std::mem::take(&mut self.0);
        pieces.push((start, end));
        pieces.sort_unstable();
        for (a, b) in pieces {
            match self.0.last_mut() {
                Some(last) if last.1 >= a => last.1 = last.1.max(b),
                _ => self.0.push((a, b)),
            }
        }
    }

    /// Whether `[start, end)` is covered.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        start >= end || self.0.iter().any(|&(a, b)| a <= start && end <= b)
    }

    /// Bytes covered.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a message asked for failure responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReportMode {
    /// No header: like `yes`.
    Absent,
    /// `yes`.
    Yes,
    /// `partial`: only failures are answered.
    Partial,
    /// `no`: nothing is answered.
    No,
}

impl FailureReportMode {
    /// Whether the sender's `Delivered` is backed by a response from the receiver.
    pub fn answered(self) -> bool {
        matches!(self, Self::Absent | Self::Yes)
    }
}

/// A message an application started.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent facts about one message
pub struct SentMessage {
    /// The sending peer and its handle for the message.
    pub sender: usize,
    pub outgoing: OutgoingId,
    /// The peer it is for.
    pub receiver: usize,
    pub message_id: String,
    pub content_type: &'static str,
    /// How the application sent it: `send_message`, `start_message` (with or without a
    /// known size), or `send_file`.
    pub how: &'static str,
    /// Every byte the application meant to send.
    pub body: Bytes,
    pub success_report: bool,
    pub failure_report: FailureReportMode,
    /// `abort_message` was accepted, or a shutdown found the stream unfinished.
    pub abort_accepted: bool,
    pub outcome: Option<MessageOutcome>,
    /// What the receiver got.
    pub received: Ranges,
    pub receiver_saw_end: bool,
    pub receiver_saw_abort: bool,
    /// What success REPORTs said.
    pub reported: Ranges,
    /// A success REPORT came (the only trace of one for an empty message).
    pub report_seen: bool,
    pub report_missing: bool,
    /// Bytes of it the receiver's engine read off the wire, when it reassembles (it then
    /// reports bytes it holds and has not delivered yet).
    pub read_off_wire: Ranges,
    /// Where the sender's output stream ends after the message's `$` chunk, once it
    /// was transmitted.
    pub last_chunk_end: Option<u64>,
    /// Most other messages of the same sender that were open together with it (what a
    /// reassembling receiver's `max_open_messages` counts; see [`SentMessage::may_be_open`]).
    pub overlap: usize,
    /// Through a relay: the receiver's session closed before the message reached it whole.
    pub receiver_gone: bool,
    /// Its last chunk was written when the sender heard `Delivered`.
    pub written_when_done: bool,
}

impl SentMessage {
    /// A message of `plan` the engine of `sender` accepted as `outgoing`, for `receiver`.
    pub fn new(sender: usize, outgoing: OutgoingId, receiver: usize, plan: &MessagePlan) -> Self {
        Self {
            sender,
            outgoing,
            receiver,
            message_id: plan.message_id.clone(),
            content_type: plan.content_type,
            how: "send_message",
            body: plan.body.clone(),
            success_report: plan.success_report,
            failure_report: plan.failure_report,
            abort_accepted: false,
            outcome: None,
            received: Ranges::default(),
            receiver_saw_end: false,
            receiver_saw_abort: false,
            reported: Ranges::default(),
            report_seen: false,
            report_missing: false,
            read_off_wire: Ranges::default(),
            last_chunk_end: None,
            overlap: 0,
            receiver_gone: false,
            written_when_done: false,
        }
    }
}

impl SentMessage {
    /// Whether a reassembling receiver may hold part of it: it has not seen its end or
    /// abort, and did not refuse it with 413. (A message that failed otherwise may stay
    /// open there until the session ends, so this over-counts, never under-counts.)
    fn may_be_open(&self) -> bool {
        !self.receiver_saw_end
            && !self.receiver_saw_abort
            && !matches!(&self.outcome, Some(MessageOutcome::Failed(error)) if error.code == 413)
    }
}

/// What the world of the seed says about a message when its sender hears how it ended:
/// the facts that can justify a failure (never derived from the outcome itself).
#[derive(Debug, Clone, Copy)]
#[allow(clippy::struct_excessive_bools)] // independent facts about the world
pub struct Context {
    /// The pair's link had a fault (refused, unanswered or late connect, reset,
    /// half-close, a reader that stopped).
    pub link_fault: bool,
    /// The pair's link is slow by plan (a reader with a gap between reads, reads of a
    /// few bytes, a 1 KiB socket buffer, or a 16 KiB one with a response timeout of 3 s
    /// or less): a response can take longer than a short response timeout.
    pub slow: bool,
    /// An application of the pair called `shutdown` or `close`, or a session of the
    /// pair is closed.
    pub ended: bool,
    /// The receiver's reassembly limits, if it reassembles.
    pub receiver_reassembly: Option<ReassemblyLimits>,
    /// The receiver accepts the message's Content-Type.
    pub receiver_accepts: bool,
    /// The pair talks through a relay, whose `481` says the other end's connection (and
    /// grant) is gone: justified when the link had a fault or the pair ended.
    pub relayed: bool,
}

/// Every message of a run, with the checks on what happens to them.
#[derive(Debug, Default)]
pub struct Oracle {
    messages: Vec<SentMessage>,
    by_message_id: BTreeMap<String, usize>,
    by_outgoing: BTreeMap<(usize, OutgoingId), usize>,
    /// Responses come hop by hop from a relay (see the [module docs](self)).
    hop_by_hop: bool,
    /// Peers whose session closed (through a relay, messages to them may be lost).
    gone: Vec<usize>,
}

/// A broken invariant, described for the failure report.
pub type Violation = String;

impl Oracle {
    /// The oracle of a world where every pair talks through a relay.
    pub fn relayed() -> Self {
        Self { hop_by_hop: true, ..Self::default() }
    }

    /// Through a relay: the session of `receiver` closed, so what it has not received
    /// by now, or is sent to it later, is lost without the sender hearing of it.
    pub fn receiver_gone(&mut self, receiver: usize) {
        self.gone.push(receiver);
        for message in self.messages.iter_mut().filter(|m| m.receiver == receiver && !m.receiver_saw_end) {
            message.receiver_gone = true;
        }
    }

    /// Records a message the sender's engine accepted.
    pub fn register(&mut self, mut message: SentMessage) {
        message.receiver_gone = self.gone.contains(&message.receiver);
        let index = self.messages.len();
        let sender = message.sender;
        let open_now = self.messages.iter().filter(|other| other.sender == sender && other.may_be_open()).count();
        for other in self.messages.iter_mut().filter(|other| other.sender == sender && other.may_be_open()) {
            other.overlap = other.overlap.max(open_now);
        }
        message.overlap = open_now;
        self.by_message_id.insert(message.message_id.clone(), index);
        self.by_outgoing.insert((message.sender, message.outgoing), index);
        self.messages.push(message);
    }

    /// Every message.
    pub fn messages(&self) -> &[SentMessage] {
        &self.messages
    }

    /// Every message, once the run is over.
    pub fn into_messages(self) -> Vec<SentMessage> {
        self.messages
    }

    /// The Content-Type of the message `message_id`.
    pub fn content_type(&self, message_id: &str) -> Option<&'static str> {
        self.by_message_id.get(message_id).map(|&index| self.messages[index].content_type)
    }

    /// The message `outgoing` of `sender`, if that peer started it.
    pub fn find(&self, sender: usize, outgoing: OutgoingId) -> Option<&SentMessage> {
        self.by_outgoing.get(&(sender, outgoing)).map(|&index| &self.messages[index])
    }

    /// `abort_message` was accepted for this message, or a shutdown aborted it.
    pub fn abort_accepted(&mut self, sender: usize, outgoing: OutgoingId) {
        if let Some(&index) = self.by_outgoing.get(&(sender, outgoing)) {
            self.messages[index].abort_accepted = true;
        }
    }

    fn by_id(&mut self, message_id: Option<&str>, what: &str) -> Result<&mut SentMessage, Violation> {
        let id = message_id.ok_or_else(|| format!("{what} without Message-ID"))?;
        let index = *self.by_message_id.get(id).ok_or_else(|| format!("{what} for unknown message {id}"))?;
        Ok(&mut self.messages[index])
    }

    /// The sender transmitted the `$` chunk of `message_id`, ending at `end` in its
    /// output stream.
    pub fn last_chunk_sent(&mut self, message_id: &str, end: u64) {
        if let Some(&index) = self.by_message_id.get(message_id) {
            self.messages[index].last_chunk_end = Some(end);
        }
    }

    /// A receiver that reassembles read bytes `start..end` of `message_id` off the wire.
    pub fn read_off_wire(&mut self, message_id: &str, start: u64, end: u64) {
        if let Some(&index) = self.by_message_id.get(message_id) {
            self.messages[index].read_off_wire.cover(start, end);
        }
    }

    /// The peer `receiver` got `chunk` (a chunk, a segment of one, or a whole message).
    pub fn incoming(&mut self, receiver: usize, chunk: &Chunk) -> Result<(), Violation> {
        let message = self.by_id(chunk.message_id(), "Incoming")?;
        let id = &message.message_id;
        if message.receiver != receiver {
            return Err(format!("{id} for peer {} arrived at peer {receiver}", message.receiver));
        }
        if message.receiver_saw_end || message.receiver_saw_abort {
            return Err(format!("{id}: a chunk arrived after the message ended"));
        }
        let start = chunk.byte_range().map_or(1, |range| range.start);
        let offset = start.checked_sub(1).ok_or_else(|| format!("{id}: Byte-Range starts at 0"))?;
        let end = offset + chunk.data.len() as u64;
        if end > message.body.len() as u64 {
            return Err(format!("{id}: bytes {offset}..{end} past the body of {}", message.body.len()));
        }
        if message.body[offset as usize..end as usize] != chunk.data[..] {
            return Err(format!("{id}: bytes {offset}..{end} differ from those sent"));
        }
        if !message.received.insert(offset, end) {
            return Err(format!("{id}: bytes {offset}..{end} delivered twice"));
        }
        match chunk.contflag {
            ContinuationFlag::End => {
                if message.abort_accepted {
                    return Err(format!("{id}: completed with `$` after the sender's abort was accepted"));
                }
                if message.received.len() != message.body.len() as u64 {
                    return Err(format!(
                        "{id}: `$` with {} of {} bytes received",
                        message.received.len(),
                        message.body.len()
                    ));
                }
                message.receiver_saw_end = true;
            }
            ContinuationFlag::Abort => message.receiver_saw_abort = true,
            ContinuationFlag::More => {}
        }
        Ok(())
    }

    /// With reassembly: the receiver heard that the message was aborted.
    pub fn incoming_aborted(&mut self, receiver: usize, message_id: &str) -> Result<(), Violation> {
        let message = self.by_id(Some(message_id), "IncomingAborted")?;
        if message.receiver != receiver || message.receiver_saw_end {
            return Err(format!("{message_id}: IncomingAborted at peer {receiver} is out of place"));
        }
        message.receiver_saw_abort = true;
        Ok(())
    }

    /// The sender got its `MessageDone`.
    pub fn done(
        &mut self,
        sender: usize,
        outgoing: OutgoingId,
        message_id: &str,
        outcome: &MessageOutcome,
        sender_written: u64,
        context: &Context,
    ) -> Result<(), Violation> {
        let index = *self
            .by_outgoing
            .get(&(sender, outgoing))
            .ok_or_else(|| format!("MessageDone for {outgoing:?} that peer {sender} never started"))?;
        let message = &mut self.messages[index];
        let id = &message.message_id;
        if id != message_id {
            return Err(format!("MessageDone names {message_id}, the message is {id}"));
        }
        if let Some(earlier) = &message.outcome {
            return Err(format!("{id}: a second MessageDone ({outcome:?} after {earlier:?})"));
        }
        match outcome {
            MessageOutcome::Delivered => {
                if message.abort_accepted {
                    return Err(format!("{id}: Delivered after its abort was accepted"));
                }
                if message.failure_report.answered() && !message.receiver_saw_end && !self.hop_by_hop {
                    return Err(format!(
                        "{id}: Delivered, but the receiver has {} of {} bytes and no `$`: lost silently",
                        message.received.len(),
                        message.body.len()
                    ));
                }
                // Without failure responses silence means success, but only for bytes
                // that were written; a success REPORT covering every byte proves them
                // arrived even before the write was acknowledged (issue 12 §2.4).
                let proven = message.report_seen && message.reported.covers(0, message.body.len() as u64);
                message.written_when_done = message.last_chunk_end.is_some_and(|end| end <= sender_written);
                // Through a relay a `200` may come although none was asked for (Kamailio
                // answers every SEND), before the write is acknowledged: checked at the end.
                if !message.failure_report.answered() && !proven && !message.written_when_done && !self.hop_by_hop {
                    return Err(format!(
                        "{id}: Delivered, but its last chunk (ending at {:?}) was not written ({sender_written} B were)",
                        message.last_chunk_end
                    ));
                }
            }
            MessageOutcome::Aborted if !message.abort_accepted => {
                return Err(format!("{id}: Aborted, but the application never aborted it"));
            }
            MessageOutcome::Aborted if message.receiver_saw_end => {
                return Err(format!("{id}: Aborted, but the receiver already has it whole (`$`)"));
            }
            MessageOutcome::Aborted => {}
            MessageOutcome::Failed(error) => {
                let len = message.body.len() as u64;
                let justified = match error.code {
                    408 => context.link_fault || context.slow || context.ended,
                    481 => context.relayed && (context.link_fault || context.ended),
                    413 => context.receiver_reassembly.is_some_and(|limits| {
                        len > limits.max_message_size || message.overlap + 1 > limits.max_open_messages
                    }),
                    415 => !context.receiver_accepts,
                    _ => false,
                };
                if !justified {
                    return Err(format!(
                        "{id}: Failed({} {}) without a cause in the world of the seed ({len} B, {}, {context:?}, \
                         {} other message(s) open with it)",
                        error.code, error.comment, message.content_type, message.overlap
                    ));
                }
            }
        }
        message.outcome = Some(outcome.clone());
        Ok(())
    }

    /// The sender got a REPORT about one of its messages.
    pub fn report(&mut self, sender: usize, about: Option<OutgoingId>, report: &Chunk) -> Result<(), Violation> {
        let message = self.by_id(report.message_id(), "REPORT")?;
        let id = &message.message_id;
        if message.sender != sender {
            return Err(format!("REPORT on {id} reached peer {sender}, not its sender"));
        }
        // The engine names the message while it is undecided or delivered and still
        // awaiting its REPORT; it forgets a message that failed or was aborted (and one
        // given up with `ReportMissing`), so a late REPORT on it names none.
        let len = message.body.len() as u64;
        let awaited = match &message.outcome {
            None => true,
            Some(MessageOutcome::Delivered) => {
                let fully_reported = message.report_seen && message.reported.covers(0, len);
                !message.report_missing && !fully_reported
            }
            Some(_) => false,
        };
        if about != Some(message.outgoing) && (awaited || about.is_some()) {
            return Err(format!("REPORT on {id} names {about:?}, the message is {:?}", message.outgoing));
        }
        let Some(status) = report.status() else { return Err(format!("REPORT on {id} without Status")) };
        if status.code != 200 {
            // Only the receiver's engine makes REPORTs here, and it reports successes.
            return Err(format!("REPORT on {id} with status {}", status.code));
        }
        if !message.success_report {
            return Err(format!("success REPORT on {id}, which did not ask for one"));
        }
        let range = report.byte_range().ok_or_else(|| format!("REPORT on {id} without Byte-Range"))?;
        // The receiver's engine always says where a reported piece ends; the total, when
        // it says one, is the message's length.
        let Some(end) = range.end else { return Err(format!("REPORT on {id} with Byte-Range {range:?}: no end")) };
        if range.total.is_some_and(|total| total != len) {
            return Err(format!("REPORT on {id} with Byte-Range {range:?}, the message has {len} B"));
        }
        if range.start == 0 || end > len || end + 1 < range.start {
            return Err(format!("REPORT on {id} with Byte-Range {range:?} outside the message of {len} B"));
        }
        let first = range.start - 1;
        if !message.received.covers(first, end) && !message.read_off_wire.covers(first, end) {
            return Err(format!("REPORT on {id} covers bytes {first}..{end}, the receiver has not all of them"));
        }
        message.reported.cover(first, end);
        message.report_seen = true;
        Ok(())
    }

    /// The sender's session closed before a success REPORT came.
    pub fn report_missing(&mut self, sender: usize, outgoing: OutgoingId) -> Result<(), Violation> {
        let index = *self
            .by_outgoing
            .get(&(sender, outgoing))
            .ok_or_else(|| format!("ReportMissing for {outgoing:?} that peer {sender} never started"))?;
        let message = &mut self.messages[index];
        let id = &message.message_id;
        if !message.success_report || message.outcome != Some(MessageOutcome::Delivered) {
            return Err(format!("ReportMissing for {id}, which did not wait for a REPORT"));
        }
        if message.reported.covers(0, message.body.len() as u64) && message.report_seen {
            return Err(format!("ReportMissing for {id}, which was fully reported"));
        }
        if message.report_missing {
            return Err(format!("a second ReportMissing for {id}"));
        }
        message.report_missing = true;
        Ok(())
    }

    /// Checks once every session ended: each message was decided, and each delivered one
    /// that asked for REPORTs is fully reported or was said missing.
    pub fn check_end(&self) -> Result<(), Violation> {
        for message in &self.messages {
            let id = &message.message_id;
            let Some(outcome) = &message.outcome else {
                return Err(format!("{id}: the run ended without its MessageDone"));
            };
            let len = message.body.len() as u64;
            let reported = message.report_seen && message.reported.covers(0, len);
            if *outcome == MessageOutcome::Delivered && message.success_report && !reported && !message.report_missing {
                return Err(format!("{id}: delivered, never fully reported, and no ReportMissing"));
            }
            // Without failure responses, silence after the last chunk was written is success.
            let silent_success = !message.failure_report.answered() && message.written_when_done;
            let arrived = message.receiver_saw_end || silent_success;
            if self.hop_by_hop && *outcome == MessageOutcome::Delivered && !arrived && !message.receiver_gone {
                return Err(format!(
                    "{id}: Delivered (the relay's 200), but the receiver, still open, got {} of {} bytes and no `$`: \
                     lost silently",
                    message.received.len(),
                    message.body.len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    #[test]
    fn ranges_refuse_overlaps_and_merge_neighbours() {
        let mut ranges = Ranges::default();
        assert!(ranges.insert(10, 20));
        assert!(ranges.insert(0, 10));
        assert!(!ranges.insert(19, 21), "byte 19 is there already");
        assert!(ranges.insert(20, 30));
        assert!(ranges.covers(0, 30) && !ranges.covers(0, 31));
        assert_eq!(ranges.len(), 30);
        assert!(ranges.insert(5, 5), "an empty range adds nothing");
    }

    #[test]
    fn cover_accepts_overlaps() {
        let mut ranges = Ranges::default();
        ranges.cover(0, 10);
        ranges.cover(5, 15);
        ranges.cover(20, 25);
        assert!(ranges.covers(0, 15) && !ranges.covers(14, 21));
        assert_eq!(ranges.len(), 20);
    }
}
