//! One task per session reads its events: incoming chunks go through an [`Inbox`] and
//! whole messages come out of a channel; REPORTs about our messages are kept in a book
//! that senders wait on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use msrp_core::session::{Event, SessionError};
use msrp_smol::Session;
use msrp_smol::runtime::Runtime;
use tokio::sync::{mpsc, watch};

use crate::inbox::{Arrival, Inbox};

/// What the reading task reports, in order; `Ended` is last.
#[derive(Debug)]
pub(crate) enum Incoming {
    Arrival(Arrival),
    /// Writing a received message failed (its folder, the disk).
    Failed(String),
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
    /// No (complete) success REPORT came.
    Missing,
}

#[derive(Default)]
struct ReportState {
    /// Byte ranges (first, last; from 1) reported with 200, merged.
    covered: Vec<(u64, u64)>,
    failure: Option<(u16, String)>,
    missing: bool,
}

impl ReportState {
    fn cover(&mut self, first: u64, last: u64) {
        self.covered.push((first, last));
        self.covered.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.covered.len());
        for &(first, last) in &self.covered {
            match merged.last_mut() {
                Some(previous) if first <= previous.1.saturating_add(1) => previous.1 = previous.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        self.covered = merged;
    }

    fn bytes(&self) -> u64 {
        self.covered.iter().map(|(first, last)| last - first + 1).sum()
    }
}

#[derive(Default)]
struct Book {
    reports: HashMap<String, ReportState>,
    ended: bool,
}

/// The REPORTs received on a session, by Message-ID.
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
                let bytes = state.map_or(0, ReportState::bytes);
                if let Some((code, reason)) = state.and_then(|state| state.failure.clone()) {
                    return (ReportOutcome::Failed(code, reason), bytes);
                }
                if bytes >= size {
                    return (ReportOutcome::Complete, bytes);
                }
                if book.ended || state.is_some_and(|state| state.missing) {
                    return (ReportOutcome::Missing, bytes);
                }
            }
            let woke = tokio::time::timeout_at(deadline, changed.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                return (ReportOutcome::Missing, self.bytes(message_id));
            }
        }
    }

    fn bytes(&self, message_id: &str) -> u64 {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.reports.get(message_id).map_or(0, ReportState::bytes)
    }
}

/// Starts reading `session`'s events; received messages go through `inbox`.
pub(crate) fn spawn<R: Runtime>(session: Arc<Session<R>>, mut inbox: Inbox) -> (mpsc::Receiver<Incoming>, Reports) {
    let (sender, receiver) = mpsc::channel(64);
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
                Event::Incoming(chunk) => match inbox.on_chunk(&chunk) {
                    Ok(Some(arrival)) => {
                        // The reader may have gone (the command is ending): keep draining.
                        let _ = sender.send(Incoming::Arrival(arrival)).await;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let _ = sender.send(Incoming::Failed(error.to_string())).await;
                    }
                },
                Event::Report { report, .. } => {
                    let (Some(message_id), Some(status)) = (report.message_id(), report.status()) else { continue };
                    let range = report.byte_range();
                    record(&|book| {
                        let state = book.reports.entry(message_id.to_owned()).or_default();
                        if status.code == 200 {
                            if let Some(range) = range {
                                let last = range.end.or(range.total).unwrap_or(range.start);
                                if last >= range.start {
                                    state.cover(range.start, last);
                                }
                            }
                        } else if state.failure.is_none() {
                            state.failure = Some((status.code, status.comment.clone().unwrap_or_default()));
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
        for (message_id, size) in inbox.abandon() {
            let _ = sender.send(Incoming::Incomplete(message_id, size)).await;
        }
        let _ = sender.send(Incoming::Ended(end)).await;
    });
    (receiver, reports)
}
