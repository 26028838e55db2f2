//! One task per session reads its events: incoming chunks go to a writer thread that runs
//! them through an [`Inbox`] (file writes and hashing stay off the async workers), and
//! whole messages come out of a channel; REPORTs about our own messages are kept in a
//! book that senders wait on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use msrp_tokio::Session;
use msrp_tokio::core::Chunk;
use msrp_tokio::core::reassembly::{Coverage, MAX_FRAGMENTS};
use msrp_tokio::core::session::{Event, SessionError};
use tokio::sync::{mpsc, watch};

use crate::inbox::{Arrival, Inbox};

/// What the reading task reports, in order; `Ended` is last. A channel that closes
/// without `Ended` means the reading task died.
#[derive(Debug)]
pub(crate) enum Incoming {
    Arrival(Arrival),
    /// Writing a received message failed (its folder, the disk); the message (with its
    /// Message-ID, when it had one) is dropped and its partial file removed.
    Failed {
        message_id: Option<String>,
        text: String,
    },
    /// The session ended in the middle of this message (Message-ID, bytes received);
    /// its partial file is removed.
    Incomplete(String, u64),
    /// The session ended: `None` after our own shutdown, else why.
    Ended(Option<SessionError>),
}

/// How the success REPORTs for one message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReportOutcome {
    /// Success REPORTs covered every byte.
    Complete,
    /// A failure REPORT: its code and reason.
    Failed(u16, String),
    /// No (complete) success REPORT came before the session ended.
    Missing,
    /// No (complete) success REPORT came in the time given.
    TimedOut,
}

#[derive(Default)]
struct ReportState {
    /// Byte positions reported with 200.
    covered: Coverage,
    failure: Option<(u16, String)>,
    missing: bool,
}

impl ReportState {
    /// Bytes of a `size`-byte message the success REPORTs covered (positions past its end
    /// do not count).
    fn bytes(&self, size: u64) -> u64 {
        self.covered.ranges().filter(|&(first, _)| first <= size).map(|(first, last)| last.min(size) - first + 1).sum()
    }

    /// Whether success REPORTs covered every byte of a `size`-byte message.
    fn complete(&self, size: u64) -> bool {
        size == 0 || self.covered.ranges().next().is_some_and(|(first, last)| first == 1 && last >= size)
    }
}

#[derive(Default)]
struct Book {
    /// Only REPORTs about messages this session sent, until their sender settles them.
    reports: HashMap<String, ReportState>,
    ended: bool,
}

/// The REPORTs received on a session about its own messages, by Message-ID.
#[derive(Clone)]
pub(crate) struct Reports {
    book: Arc<Mutex<Book>>,
    changed: watch::Receiver<u64>,
}

impl Reports {
    /// Waits until REPORTs cover all `size` bytes of `message_id`, one fails it, or none
    /// can come any more (the session ended, or `patience` passed). Returns the outcome
    /// and the bytes the success REPORTs covered.
    pub(crate) async fn wait(&self, message_id: &str, size: u64, patience: Duration) -> (ReportOutcome, u64) {
        let deadline = tokio::time::Instant::now() + patience;
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            {
                let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
                let state = book.reports.get(message_id);
                let bytes = state.map_or(0, |state| state.bytes(size));
                if let Some((code, reason)) = state.and_then(|state| state.failure.clone()) {
                    return (ReportOutcome::Failed(code, reason), bytes);
                }
                if state.is_some_and(|state| state.complete(size)) {
                    return (ReportOutcome::Complete, bytes);
                }
                if book.ended || state.is_some_and(|state| state.missing) {
                    return (ReportOutcome::Missing, bytes);
                }
            }
            let woke = tokio::time::timeout_at(deadline, changed.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
                let bytes = book.reports.get(message_id).map_or(0, |state| state.bytes(size));
                let outcome = if woke.is_err() { ReportOutcome::TimedOut } else { ReportOutcome::Missing };
                return (outcome, bytes);
            }
        }
    }

    /// Drops what is kept about `message_id`: its sender has settled it.
    pub(crate) fn forget(&self, message_id: &str) {
        self.book.lock().unwrap_or_else(PoisonError::into_inner).reports.remove(message_id);
    }
}

/// Work for the writer thread.
enum Work {
    Chunk(Chunk),
    End(Option<SessionError>),
}

/// Starts reading `session`'s events; received messages go through `inbox`.
pub(crate) fn spawn(session: Arc<Session>, inbox: Inbox) -> (mpsc::Receiver<Incoming>, Reports) {
    let (sender, receiver) = mpsc::channel(64);
    let (work, chunks) = mpsc::channel(64);
    tokio::task::spawn_blocking(move || write(inbox, chunks, &sender));
    let (notify, changed) = watch::channel(0_u64);
    let book = Arc::new(Mutex::new(Book::default()));
    let reports = Reports { book: Arc::clone(&book), changed };
    tokio::spawn(async move {
        let record = |update: &dyn Fn(&mut Book)| {
            update(&mut book.lock().unwrap_or_else(PoisonError::into_inner));
            notify.send_modify(|version| *version += 1);
        };
        let mut end = Some(SessionError::ConnectionClosed);
        while let Some(event) = session.next_event().await {
            match event {
                Event::Incoming(chunk) => {
                    // The writer only stops when the command is ending: keep draining.
                    let _ = work.send(Work::Chunk(chunk)).await;
                }
                // REPORTs about messages that are not ours are of no interest.
                Event::Report { message: Some(_), report } => {
                    let (Some(message_id), Some(status)) = (report.message_id(), report.status()) else { continue };
                    // Only namespace 000 holds MSRP codes (RFC 4975 §7.3.2, issue 12 §2.3).
                    let Some(code) = status.msrp_code() else { continue };
                    let range = report.byte_range();
                    record(&|book| {
                        let state = book.reports.entry(message_id.to_owned()).or_default();
                        if code == 200 {
                            if let Some(range) = range {
                                let last = range.end.or(range.total).unwrap_or(range.start);
                                // A peer scattering REPORTs in tiny pieces is not followed
                                // further: what they cover stays incomplete.
                                if state.covered.fragments() < MAX_FRAGMENTS {
                                    state.covered.record_range(range.start.max(1), Some(last), None, false);
                                }
                            }
                        } else if state.failure.is_none() {
                            state.failure = Some((code, status.comment.clone().unwrap_or_default()));
                        }
                    });
                }
                Event::ReportMissing { message_id, .. } => {
                    record(&|book| book.reports.entry(message_id.clone()).or_default().missing = true);
                }
                Event::Closed { reason } => {
                    end = reason;
                    break;
                }
                _ => {}
            }
        }
        record(&|book| book.ended = true);
        let _ = work.send(Work::End(end)).await;
    });
    (receiver, reports)
}

/// The writer thread: runs the chunks through `inbox` in order; at the end, reports the
/// messages left incomplete (their files removed), then `Ended`.
fn write(mut inbox: Inbox, mut chunks: mpsc::Receiver<Work>, sender: &mpsc::Sender<Incoming>) {
    // A send fails only when the command stopped listening: keep going to the end anyway,
    // so that partial files are removed.
    while let Some(work) = chunks.blocking_recv() {
        match work {
            Work::Chunk(chunk) => match inbox.on_chunk(&chunk) {
                Ok(Some(arrival)) => {
                    let _ = sender.blocking_send(Incoming::Arrival(arrival));
                }
                Ok(None) => {}
                Err(error) => {
                    let message_id = chunk.message_id().map(str::to_owned);
                    let _ = sender.blocking_send(Incoming::Failed { message_id, text: error.to_string() });
                }
            },
            Work::End(end) => {
                for (message_id, size) in inbox.abandon() {
                    let _ = sender.blocking_send(Incoming::Incomplete(message_id, size));
                }
                let _ = sender.blocking_send(Incoming::Ended(end));
                return;
            }
        }
    }
    // The reading task died: no `Ended`, but no partial file left either.
    for (message_id, size) in inbox.abandon() {
        let _ = sender.blocking_send(Incoming::Incomplete(message_id, size));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_count_only_the_bytes_of_the_message() {
        let mut state = ReportState::default();
        state.covered.record_range(5, Some(1000), None, false);
        assert!(!state.complete(100), "bytes 5-1000 of a 100-byte message are not all of it");
        assert_eq!(state.bytes(100), 96);
        state.covered.record_range(1, Some(4), None, false);
        assert!(state.complete(100));
        assert_eq!(state.bytes(100), 100);
        let mut gaps = ReportState::default();
        gaps.covered.record_range(51, Some(100), None, false);
        gaps.covered.record_range(1, Some(49), None, false);
        assert!(!gaps.complete(100));
        assert_eq!(gaps.bytes(100), 99);
    }
}
