//! The receive path of a session: decoded chunks are checked, answered, delivered and
//! reported on.

use bytes::Bytes;

use crate::chunk::{Chunk, ContinuationFlag, END_LINE_PREFIX, Method};
use crate::codec::{Assembly, ChunkParseError, Decoded};
use crate::header::{ByteRange, HeaderName, SuccessReport};
use crate::reassembly::Reassembled;
use crate::transport::MsrpError;

use super::{Event, MessageOutcome, Session, SessionError, State};

/// Separate pieces of one message tracked for its success REPORT before the pieces are
/// reported as they are.
pub(super) const MAX_REPORT_FRAGMENTS: usize = 64;

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
                        self.reply(head, 413, Some("Message too large".to_owned()));
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
                incoming.assembly.push(data);
                if incoming.assembly.len() >= self.config.segment_size {
                    let segment = incoming.assembly.take_segment(None);
                    incoming.delivered_any = true;
                    if !self.deliver(segment) {
                        incoming.verdict = Verdict::Skip;
                    }
                    self.replies.extend(self.pending_reports.drain(..));
                }
            }
            Verdict::Report | Verdict::Request => incoming.assembly.push(data),
            Verdict::Skip => {}
        }
        if self.state != State::Closed {
            self.incoming = Some(incoming);
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

    /// Refuses a chunk after part of it was accepted.
    fn refuse(&mut self, chunk: &Chunk, error: &MsrpError) {
        self.logger.warn(&format!("refusing {}: {error}", chunk.transaction_id));
        if let Some(message_id) = chunk.message_id() {
            self.owed_reports.remove(message_id);
        }
        self.reply(chunk, error.code, Some(error.comment.clone()));
    }

    /// Records a delivered chunk of a message that asked for a success REPORT; when the
    /// message is complete, its `000 200` REPORT covering every byte is made ready
    /// (R4975-7.1.3-1/-2). Memory stays bounded: past `max_tracked_reports` messages, or
    /// when a message arrives in more than [`MAX_REPORT_FRAGMENTS`] separate pieces, the
    /// REPORTs cover what arrived piece by piece instead (RFC 4975 §7.1.3 allows both).
    fn owe_report(&mut self, chunk: &Chunk) {
        if chunk.success_report() != SuccessReport::Yes {
            return;
        }
        let message_id = chunk.message_id().unwrap_or_default().to_owned();
        if chunk.contflag == ContinuationFlag::Abort {
            self.owed_reports.remove(&message_id);
            return;
        }
        let range = chunk.byte_range();
        let total = range.and_then(|range| range.total);
        let start = range.map_or(1, |range| range.start);
        let own_range = ByteRange::new(start, Some((start + chunk.data.len() as u64).saturating_sub(1)), total);
        let tracked = self.owed_reports.contains_key(&message_id);
        let ranges = if !tracked && self.owed_reports.len() >= self.config.max_tracked_reports {
            vec![own_range]
        } else {
            let coverage = self.owed_reports.entry(message_id.clone()).or_default();
            if let Some(length) = coverage.record(chunk) {
                self.owed_reports.remove(&message_id);
                vec![ByteRange::new(1, Some(length), Some(length))]
            } else if coverage.fragments() > MAX_REPORT_FRAGMENTS {
                let pieces = coverage.ranges().map(|(first, last)| ByteRange::new(first, Some(last), total)).collect();
                self.owed_reports.remove(&message_id);
                pieces
            } else {
                return;
            }
        };
        for range in ranges {
            // Sent after the chunk's response (see `on_end`).
            let report = self.transport.make_report(chunk, 200, Some("OK".to_owned()), range);
            self.pending_reports.extend(report);
        }
    }

    fn on_response(&mut self, response: &Chunk) {
        match self.transactions.take(&response.transaction_id) {
            Some(transaction) => self.complete_transaction(transaction.kind, response.clone(), false),
            None => self.logger.warn(&format!("response to unknown transaction {}", response.transaction_id)),
        }
    }

    /// A REPORT arrived: it may fail or stop one of our messages (R4975-7.3.2-1/-2/-3).
    fn on_report(&mut self, report: Chunk) {
        let message_id = report.message_id().unwrap_or_default();
        let open = self.messages.iter().find(|(_, m)| m.message_id == message_id).map(|(id, _)| *id);
        let message = open.or_else(|| self.awaiting_reports.get(message_id).copied());
        let status = report.status();
        let code = status.as_ref().map_or(200, |status| status.code);
        if code == 200 {
            let covers_all =
                report.byte_range().is_none_or(|range| range.total.is_some_and(|total| range.end == Some(total)));
            if covers_all {
                self.awaiting_reports.remove(message_id);
            }
        } else if let Some(id) = open {
            // R4975-7.3.2-2: `000 413` acts like a 413 response; any failure stops the message.
            let error = MsrpError::new(code, status.and_then(|s| s.comment).unwrap_or_default());
            if let Some(message) = self.messages.get_mut(&id) {
                message.failed.get_or_insert(error);
            }
            self.stop_message(id);
            self.settle_message(id);
        }
        self.events.push_back(Event::Report { message, report });
    }

    fn on_parse_error(&mut self, error: ChunkParseError) {
        if error.closes_connection() {
            self.fail(SessionError::Parse(error));
            return;
        }
        self.logger.warn(&format!("bad chunk from the peer: {error}"));
        if let Some(mut incoming) = self.incoming.take() {
            if incoming.verdict == Verdict::Deliver && incoming.delivered_any {
                // The application saw the start of this chunk: tell it the chunk broke off.
                let rest = incoming.assembly.take_segment(Some(ContinuationFlag::Abort));
                self.events.push_back(Event::Incoming(rest));
            }
        }
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

impl MessageOutcome {
    /// Whether the message arrived.
    pub fn is_delivered(&self) -> bool {
        *self == Self::Delivered
    }
}
