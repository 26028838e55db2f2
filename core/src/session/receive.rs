//! The receive path of a session: decoded chunks are checked, answered, delivered and
//! reported on.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::chunk::{Chunk, ContinuationFlag, END_LINE_PREFIX, Method};
use crate::codec::{Assembly, ChunkParseError, Decoded};
use crate::header::{ByteRange, HeaderName, Headers, SuccessReport};
use crate::reassembly::{Coverage, Reassembled};
use crate::transport::MsrpError;

use super::transactions::TransactionKind;
use super::{Event, MessageOutcome, SendError, Session, SessionError, State};

/// Separate pieces of one message tracked for its success REPORT before the pieces are
/// reported as they are.
pub const MAX_REPORT_FRAGMENTS: usize = 64;

/// What is done with the chunk being received, decided from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A SEND for the application: deliver its body, answer at its end.
    Deliver,
    /// A REPORT: gather its body, then act on it.
    Report,
    /// A request the application answers (NICKNAME): gather, then hand over.
    Request,
    /// Answered already, or a response: drop the body.
    Skip,
}

/// Incoming messages whose success REPORTs wait for the application's word
/// ([`SessionConfig::confirm_messages`](super::SessionConfig::confirm_messages)), by
/// Message-ID, at most `max_tracked_reports` of them (the oldest is given up past that).
#[derive(Debug, Default)]
pub(super) struct Unconfirmed {
    messages: HashMap<String, Held>,
    /// Message-IDs, oldest first.
    order: VecDeque<String>,
}

/// What is kept of a message until it is confirmed or refused.
#[derive(Debug)]
struct Held {
    /// The head of its first chunk, without a body: what a REPORT answers.
    request: Chunk,
    /// Bytes whose success REPORT is held; `None` once the pieces grew past
    /// [`MAX_REPORT_FRAGMENTS`] (the message then gets no success REPORT).
    owed: Option<Coverage>,
    /// Its length, once a Byte-Range total or the `$` chunk said it.
    length: Option<u64>,
}

impl Unconfirmed {
    fn remove(&mut self, message_id: &str) -> Option<Held> {
        let held = self.messages.remove(message_id)?;
        self.order.retain(|id| id != message_id);
        Some(held)
    }
}

/// The chunk being received.
#[derive(Debug)]
pub(super) struct Incoming {
    assembly: Assembly,
    verdict: Verdict,
    /// Whether segments of it reached the application.
    delivered_any: bool,
}

impl Session {
    /// Feeds received bytes to the decoder and acts on everything decoded.
    pub(super) fn on_received(&mut self, data: Bytes) {
        self.decoder.feed(data);
        while self.state != State::Closed {
            let Some(item) = self.decoder.poll() else { break };
            match item {
                Ok(Decoded::Head(head)) => self.on_head(head),
                Ok(Decoded::Data(data)) => self.on_data(data),
                Ok(Decoded::End(flag)) => self.on_end(flag),
                Err(error) => self.on_parse_error(error),
            }
        }
    }

    fn on_head(&mut self, head: Chunk) {
        if self.logger.logs_traffic() {
            self.logger.received_new_chunk(&head.encode_start(), &self.transport, &head);
        }
        let verdict = if head.is_request() {
            self.judge(&head)
        } else {
            self.on_response(&head);
            Verdict::Skip
        };
        if self.state != State::Closed {
            self.incoming = Some(Incoming { assembly: Assembly::new(head), verdict, delivered_any: false });
        }
    }

    /// Decides what to do with an incoming request, answering at once when it is refused.
    fn judge(&mut self, head: &Chunk) -> Verdict {
        let Some(method) = head.method().cloned() else { return Verdict::Skip };
        let paths = self.transport.check_incoming_send_chunk(head);
        if method == Method::Report {
            // RFC 4975 §7.1.2: a REPORT is never answered; one for another session is ignored.
            return if paths.is_ok() { Verdict::Report } else { Verdict::Skip };
        }
        if let Err(error) = paths {
            // R4975-7.3-1: not this session → 481 (silence with Failure-Report: no).
            self.logger.warn(&format!("{method} {}: {error}", head.transaction_id));
            self.reply(head, error.code, Some(error.comment));
            return Verdict::Skip;
        }
        // R4975-5.4-5: the first request for this session binds the connection (also
        // when both sides were active).
        self.set_bound();
        match method {
            Method::Send => {
                if let Some(content_type) = head.content_type() {
                    if !self.config.accept_types.accepts(content_type) {
                        // R4975-7.3.1-4.
                        self.reply(head, 415, Some("Unsupported Media Type".to_owned()));
                        return Verdict::Skip;
                    }
                }
                let announced = head.byte_range().and_then(|range| range.total);
                if let (Some(limits), Some(total)) = (self.config.reassembly, announced) {
                    if total > limits.max_message_size {
                        self.refuse(head, &MsrpError::new(413, "Message too large"));
                        return Verdict::Skip;
                    }
                }
                Verdict::Deliver
            }
            Method::Nickname => {
                if head.headers.get(&HeaderName::UseNickname).is_none() {
                    // RFC 7701 §7.1: NICKNAME carries Use-Nickname.
                    self.reply(head, 400, Some("Use-Nickname missing".to_owned()));
                    return Verdict::Skip;
                }
                Verdict::Request
            }
            // R4975-12-1: an endpoint answers methods it does not implement with 501.
            Method::Auth | Method::Other(_) | Method::Report => {
                self.reply(head, 501, Some("Not Implemented".to_owned()));
                Verdict::Skip
            }
        }
    }

    fn on_data(&mut self, data: Bytes) {
        let Some(mut incoming) = self.incoming.take() else { return };
        if self.logger.logs_traffic() {
            self.logger.received_chunk_data(&data, &self.transport, &incoming.assembly.head().transaction_id);
        }
        match incoming.verdict {
            Verdict::Deliver => {
                // A segment goes out once it holds `segment_size` bytes. Bytes held go out
                // first when this piece would take them past that size: large reads then
                // pass as they are, never joined into a copy.
                let held = incoming.assembly.len();
                if held > 0 && held + data.len() > self.config.segment_size {
                    self.deliver_segment(&mut incoming);
                }
                if incoming.verdict == Verdict::Deliver {
                    incoming.assembly.push(data);
                    if incoming.assembly.len() >= self.config.segment_size {
                        self.deliver_segment(&mut incoming);
                    }
                }
            }
            Verdict::Report | Verdict::Request => incoming.assembly.push(data),
            Verdict::Skip => {}
        }
        if self.state != State::Closed {
            self.incoming = Some(incoming);
        }
    }

    /// Hands what `incoming` gathered to the application as a virtual segment.
    fn deliver_segment(&mut self, incoming: &mut Incoming) {
        let segment = incoming.assembly.take_segment(None);
        incoming.delivered_any = true;
        if !self.deliver(segment) {
            incoming.verdict = Verdict::Skip;
        }
    }

    fn on_end(&mut self, flag: ContinuationFlag) {
        let Some(mut incoming) = self.incoming.take() else { return };
        if self.logger.logs_traffic() {
            let transaction_id = &incoming.assembly.head().transaction_id;
            let mut end_line = END_LINE_PREFIX.to_vec();
            end_line.extend_from_slice(transaction_id.as_bytes());
            end_line.extend_from_slice(&[flag.as_byte(), b'\r', b'\n']);
            self.logger.received_chunk_end(&end_line, &self.transport, transaction_id);
        }
        match incoming.verdict {
            Verdict::Deliver => {
                let chunk = incoming.assembly.take_segment(Some(flag));
                let head = Chunk { data: Bytes::new(), ..chunk.clone() };
                if self.deliver(chunk) {
                    self.reply(&head, 200, Some("OK".to_owned()));
                }
                self.replies.extend(self.pending_reports.drain(..));
            }
            Verdict::Report => {
                let report = incoming.assembly.take_segment(Some(flag));
                self.on_report(report);
            }
            Verdict::Request => {
                let request = incoming.assembly.take_segment(Some(flag));
                self.events.push_back(Event::Request(request));
            }
            Verdict::Skip => {}
        }
    }

    /// Hands a SEND chunk or segment to the application (or the reassembler) and keeps
    /// track of the success REPORT it may be owed. `false` when it was refused (413 sent).
    fn deliver(&mut self, chunk: Chunk) -> bool {
        if is_empty_message(&chunk) {
            // A bodiless, complete SEND (binding or keepalive) carries nothing to show.
            self.owe_report(&chunk);
            return true;
        }
        let Some(reassembler) = &mut self.reassembler else {
            self.owe_report(&chunk);
            self.events.push_back(Event::Incoming(chunk));
            return true;
        };
        match reassembler.add(&chunk) {
            Err(error) => {
                self.refuse(&chunk, &error);
                return false;
            }
            Ok(Reassembled::Incomplete) => self.owe_report(&chunk),
            Ok(Reassembled::Complete { data, .. }) => {
                self.owe_report(&chunk);
                let mut message = Chunk { data, contflag: ContinuationFlag::End, segment: None, ..chunk };
                message.add_header(&ByteRange::whole(message.data.len() as u64));
                self.events.push_back(Event::Incoming(message));
            }
            Ok(Reassembled::Aborted { message_id }) => {
                self.owe_report(&chunk);
                self.events.push_back(Event::IncomingAborted { message_id });
            }
        }
        true
    }

    /// Refuses a SEND chunk with `error` (413): forgets what was gathered or tracked of
    /// its message, and answers.
    fn refuse(&mut self, chunk: &Chunk, error: &MsrpError) {
        self.logger.warn(&format!("refusing {}: {error}", chunk.transaction_id));
        if let Some(message_id) = chunk.message_id() {
            self.forget_incoming(message_id);
        }
        // Reports made ready by earlier segments of this chunk would confirm bytes now refused.
        self.pending_reports.clear();
        self.reply(chunk, error.code, Some(error.comment.clone()));
    }

    /// An incoming message is refused: no REPORT is owed or held for it any more, and
    /// nothing of it is gathered.
    fn forget_incoming(&mut self, message_id: &str) {
        self.owed_reports.remove(message_id);
        self.unconfirmed.remove(message_id);
        if let Some(reassembler) = &mut self.reassembler {
            reassembler.forget(message_id);
        }
    }

    /// Records a delivered chunk of a message that asked for a success REPORT and makes
    /// ready the REPORTs it is owed (R4975-7.1.3-1/-2), sent after the chunk's response.
    ///
    /// A message received whole from byte 1 gets one REPORT covering all of it once it is
    /// complete. Otherwise every byte is still reported, piece by piece: when the `$`
    /// chunk comes without bytes missing from 1 (a resumed message), when a message
    /// arrives in more than [`MAX_REPORT_FRAGMENTS`] pieces, or when more than
    /// `max_tracked_reports` messages are open; later chunks of such a message are then
    /// reported one by one. So memory stays bounded whatever the peer sends.
    fn owe_report(&mut self, chunk: &Chunk) {
        // A bodiless message (binding, keepalive) never reaches the application, so it
        // is never confirmed: its REPORT goes out at once.
        let held = self.config.confirm_messages && !is_empty_message(chunk);
        if held {
            self.hold(chunk);
        }
        if chunk.success_report() != SuccessReport::Yes {
            return;
        }
        let Some(message_id) = chunk.message_id().map(str::to_owned) else { return };
        if chunk.contflag == ContinuationFlag::Abort {
            self.owed_reports.remove(&message_id);
            return;
        }
        let range = chunk.byte_range();
        let total = range.and_then(|range| range.total);
        let start = range.map_or(1, |range| range.start);
        let last = (start + chunk.data.len() as u64).saturating_sub(1);
        let piece = |first: u64, last: u64| ByteRange::new(first, Some(last), total.filter(|&total| total >= last));
        let per_piece = self.report_per_piece.contains(&message_id)
            || (!self.owed_reports.contains_key(&message_id)
                && self.owed_reports.len() >= self.config.max_tracked_reports);
        let ranges = if per_piece {
            if chunk.data.is_empty() { Vec::new() } else { vec![piece(start, last)] }
        } else {
            let coverage = self.owed_reports.entry(message_id.clone()).or_default();
            if let Some(length) = coverage.record(chunk) {
                self.owed_reports.remove(&message_id);
                vec![ByteRange::new(1, Some(length), Some(length))]
            } else if chunk.contflag == ContinuationFlag::End || coverage.fragments() > MAX_REPORT_FRAGMENTS {
                let pieces = coverage.ranges().map(|(first, last)| piece(first, last)).collect();
                self.owed_reports.remove(&message_id);
                if self.report_per_piece.len() >= self.config.max_tracked_reports {
                    self.report_per_piece.pop_front();
                }
                self.report_per_piece.push_back(message_id.clone());
                pieces
            } else {
                return;
            }
        };
        for range in ranges {
            if held {
                self.owe_held(&message_id, range);
            } else {
                let report = self.transport.make_report(chunk, 200, Some("OK".to_owned()), range);
                self.pending_reports.extend(report);
            }
        }
    }

    /// Keeps what a later [`Session::confirm_message`] needs to know of `chunk`'s message;
    /// an `#` chunk forgets it (the sender gave it up: nothing is owed).
    fn hold(&mut self, chunk: &Chunk) {
        let Some(message_id) = chunk.message_id() else { return };
        if chunk.contflag == ContinuationFlag::Abort {
            self.unconfirmed.remove(message_id);
            return;
        }
        let range = chunk.byte_range();
        let start = range.map_or(1, |range| range.start);
        let end = (chunk.contflag == ContinuationFlag::End)
            .then(|| (start - 1).saturating_add(chunk.data.len() as u64))
            .or_else(|| range.and_then(|range| range.total));
        if let Some(held) = self.unconfirmed.messages.get_mut(message_id) {
            if chunk.contflag == ContinuationFlag::End || held.length.is_none() {
                held.length = end.or(held.length);
            }
            return;
        }
        if self.unconfirmed.order.len() >= self.config.max_tracked_reports {
            if let Some(oldest) = self.unconfirmed.order.pop_front() {
                self.logger.warn(&format!("message {oldest} was not confirmed in time: it gets no success REPORT"));
                self.unconfirmed.messages.remove(&oldest);
            }
        }
        let held = Held { request: report_basis(chunk), owed: Some(Coverage::default()), length: end };
        self.unconfirmed.messages.insert(message_id.to_owned(), held);
        self.unconfirmed.order.push_back(message_id.to_owned());
    }

    /// Holds a success REPORT for `range` of a message until it is confirmed.
    fn owe_held(&mut self, message_id: &str, range: ByteRange) {
        let Some(held) = self.unconfirmed.messages.get_mut(message_id) else { return };
        let Some(owed) = &mut held.owed else { return };
        owed.record_range(range.start, range.end, None, false);
        if owed.fragments() > MAX_REPORT_FRAGMENTS {
            held.owed = None;
            self.logger.warn(&format!("message {message_id} came in too many pieces: it gets no success REPORT"));
        }
    }

    /// The application's word on a complete incoming message, with
    /// [`SessionConfig::confirm_messages`](super::SessionConfig::confirm_messages) on
    /// (e.g. once it is safely on disk).
    ///
    /// `Ok(())` sends the success REPORTs held for it (RFC 4975 §7.1.2: the REPORT says
    /// the message was received; one covering it all when it arrived whole, else one per
    /// piece). `Err(error)` (a status other than 200, such as 413) sends a failure
    /// REPORT with that status over the whole message instead, when its
    /// `Failure-Report` allows one (`yes` or `partial`, RFC 4975 §7.1.2, §7.3): its
    /// chunks were answered 200 already, so a REPORT is the only way left to say it
    /// failed. Either way the message is forgotten: confirmed before all of it arrived,
    /// the REPORTs cover the pieces held so far, and chunks that arrive later are held
    /// again, for another confirmation.
    ///
    /// Returns whether a REPORT went out: `false` when its headers asked for none, or
    /// when nothing is held for `message_id` (the mode is off, it was confirmed
    /// already, it had no Message-ID, or it was given up past `max_tracked_reports`
    /// messages waiting). `Err` only when the session is closed.
    pub fn confirm_message(
        &mut self,
        now: Instant,
        message_id: &str,
        outcome: Result<(), MsrpError>,
    ) -> Result<bool, SendError> {
        self.advance(now);
        if self.state == State::Closed {
            return Err(SendError::Closed);
        }
        let Some(held) = self.unconfirmed.remove(message_id) else { return Ok(false) };
        let length = held.length;
        let ranges: Vec<ByteRange> = match outcome {
            Ok(()) => {
                let pieces: Vec<(u64, u64)> = held.owed.iter().flat_map(Coverage::ranges).collect();
                match pieces[..] {
                    [(1, last)] if length == Some(last) => vec![ByteRange::new(1, Some(last), Some(last))],
                    _ => pieces
                        .into_iter()
                        .map(|(first, last)| ByteRange::new(first, Some(last), length.filter(|&total| total >= last)))
                        .collect(),
                }
            }
            Err(error) => {
                // Nothing more of it is owed a success REPORT, whatever still arrives.
                self.forget_incoming(message_id);
                let range = ByteRange::new(1, length, length);
                let report = self.transport.make_report(&held.request, error.code, Some(error.comment), range);
                let sent = report.is_some();
                self.replies.extend(report);
                return Ok(sent);
            }
        };
        let mut sent = false;
        for range in ranges {
            let report = self.transport.make_report(&held.request, 200, Some("OK".to_owned()), range);
            sent |= report.is_some();
            self.replies.extend(report);
        }
        Ok(sent)
    }

    fn on_response(&mut self, response: &Chunk) {
        if let Some(relay) = &mut self.relay {
            if relay.handle_response(self.now, response) {
                self.pull_relay();
                return;
            }
        }
        // A response to nothing we wait for (say a relay's 200 to a request sent with
        // `Failure-Report: no`, or one after its local timeout) is dropped.
        match self.transactions.take(&response.transaction_id) {
            Some(transaction) => self.complete_transaction(transaction.kind, response.clone(), false),
            None => self.logger.warn(&format!("response to unknown transaction {}", response.transaction_id)),
        }
    }

    /// A REPORT arrived (R4975-7.3.2-1): success REPORTs are counted against the bytes
    /// of our message; a failure REPORT stops it (`000 413` like a 413 response,
    /// R4975-7.3.2-2), and any other failure fails the session (R4975-7.3.2-4: bytes were
    /// lost). A REPORT without Status or about no message of ours is only shown, and so
    /// is one whose Status is in a namespace other than `000`: only that namespace holds
    /// MSRP codes (RFC 4975 §7.3.2, issue 12 §2.3), so `999 500` neither fails nor
    /// confirms anything.
    fn on_report(&mut self, report: Chunk) {
        let message_id = report.message_id().unwrap_or_default().to_owned();
        let open = self.messages.iter().find(|(_, m)| m.message_id == message_id).map(|(id, _)| *id);
        let awaited = self.awaiting_reports.iter().position(|awaited| awaited.message_id == message_id);
        let message = open.or_else(|| awaited.map(|at| self.awaiting_reports[at].id));
        let Some(status) = report.status() else {
            self.logger.warn(&format!("REPORT {} without Status ignored", report.transaction_id));
            self.events.push_back(Event::Report { message, report });
            return;
        };
        let Some(code) = status.msrp_code() else {
            self.logger.warn(&format!("REPORT {} with a Status outside namespace 000 ignored", report.transaction_id));
            self.events.push_back(Event::Report { message, report });
            return;
        };
        if code == 200 {
            let range = report.byte_range().unwrap_or(ByteRange::new(1, None, None));
            let last = range.end.or(range.total);
            let mut covered = false;
            if let Some(id) = open {
                if let Some(outgoing) = self.messages.get_mut(&id) {
                    outgoing.reported.record_range(range.start, last, range.total, true);
                    outgoing.report_seen = true;
                    covered = outgoing.all_sent && outgoing.reported.is_complete();
                }
            } else if let Some(at) = awaited {
                let awaited = &mut self.awaiting_reports[at];
                if awaited.reported.record_range(range.start, last, range.total, true).is_some() {
                    self.awaiting_reports.remove(at);
                }
            }
            self.events.push_back(Event::Report { message, report });
            // With `Failure-Report` partial or no a success gets no response (RFC 4975
            // §7.2); a success REPORT covering the bytes proves it (§7.1.2), so what it
            // covers is done now, not by the response timer's local 200 (issue 12 §2.4).
            let requests = self.transactions.has_reported_requests();
            let proven = if covered || requests {
                self.transactions.take_silent(|transaction| match transaction.kind {
                    TransactionKind::Message(of) => covered && Some(of) == open,
                    TransactionKind::Request(_) => {
                        last.is_some_and(|last| transaction.is_reported_by(&message_id, range.start, last))
                    }
                    TransactionKind::Bind | TransactionKind::Keepalive => false,
                })
            } else {
                Vec::new()
            };
            for (transaction_id, transaction) in proven {
                let response = transaction.local_timeout_response(&transaction_id);
                self.complete_transaction(transaction.kind, response, true);
            }
            return;
        }
        let error = MsrpError::new(code, status.comment.clone().unwrap_or_default());
        if let Some(at) = awaited {
            self.awaiting_reports.remove(at);
        }
        if let Some(id) = open {
            if let Some(outgoing) = self.messages.get_mut(&id) {
                outgoing.failed.get_or_insert_with(|| error.clone());
            }
            self.stop_message(id, code);
            self.settle_message(id);
        }
        self.events.push_back(Event::Report { message, report });
        if message.is_some() && code != 413 {
            self.fail(SessionError::Failed(error));
        }
    }

    fn on_parse_error(&mut self, error: ChunkParseError) {
        if error.closes_connection() {
            self.fail(SessionError::Parse(error));
            return;
        }
        self.logger.warn(&format!("bad chunk from the peer: {error}"));
        if let Some(rest) = self.incoming.take().and_then(Incoming::cut_off) {
            // The application saw the start of this chunk: tell it the chunk broke off.
            self.events.push_back(Event::Incoming(rest));
        }
        self.pending_reports.clear();
        if let (Some(code), Some(head)) = (error.status(), &error.head) {
            self.reply(head, code, Some(error.kind.to_string()));
        }
    }
}

/// A SEND that is a whole message with no body and no Content-Type (binding, keepalive).
fn is_empty_message(chunk: &Chunk) -> bool {
    chunk.data.is_empty()
        && chunk.content_type().is_none()
        && chunk.contflag == ContinuationFlag::End
        && chunk.segment.is_none()
        && chunk.byte_range().is_none_or(|range| range.start == 1)
}

impl Incoming {
    /// What the application must still hear of a chunk that will not end normally: the
    /// rest of a SEND it already saw part of, flagged `#`.
    pub(super) fn cut_off(mut self) -> Option<Chunk> {
        (self.verdict == Verdict::Deliver && self.delivered_any)
            .then(|| self.assembly.take_segment(Some(ContinuationFlag::Abort)))
    }
}

impl MessageOutcome {
    /// Whether the message arrived.
    pub fn is_delivered(&self) -> bool {
        *self == Self::Delivered
    }
}

/// What a REPORT about `request` is made from ([`Transport::make_report`]: its method and
/// the headers it reads), copied out of the read buffer. A held head keeps neither the
/// peer's other headers nor the buffer its values are slices of, so messages waiting for
/// the application's confirmation cost a few hundred bytes each, whatever the peer sent.
///
/// [`Transport::make_report`]: crate::transport::Transport::make_report
fn report_basis(request: &Chunk) -> Chunk {
    let mut basis = Chunk { headers: Headers::new(), data: Bytes::new(), ..request.clone() };
    for name in [HeaderName::FromPath, HeaderName::MessageId, HeaderName::SuccessReport, HeaderName::FailureReport] {
        if let Some(value) = request.headers.get(&name) {
            basis.headers.set(name, value.as_str());
        }
    }
    basis
}
