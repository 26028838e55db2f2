//! Outgoing requests waiting for their response, with their timers.
//!
//! A request's response timer starts when its last byte was written (RFC 4975 §7.1.1:
//! "within 30 s of the last byte being sent"), so a transaction first waits in write
//! order for [`Transactions::arm_written`], then in deadline order for a response or
//! [`Transactions::pop_expired`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::chunk::Chunk;
use crate::header::{FailureReport, SuccessReport};
use crate::outbox::OutgoingId;

use super::RequestId;

/// Who waits for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransactionKind {
    /// The application, through `send_chunk`.
    Request(RequestId),
    /// A chunk of an outgoing message.
    Message(OutgoingId),
    /// The active side's binding SEND.
    Bind,
    /// A keepalive SEND.
    Keepalive,
}

/// A request waiting for its response.
#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) kind: TransactionKind,
    failure_report: FailureReport,
    /// Opening order, so that closing answers transactions in the order they were sent.
    opened: u64,
    /// The armed timer's key in `Transactions::deadlines`.
    deadline: Option<(Instant, u64)>,
    /// For a request of the application that succeeds silently (`Failure-Report` partial
    /// or no) and asks for a success REPORT: its Message-ID and the byte positions it
    /// carries, first to last.
    reported_by: Option<(String, u64, u64)>,
}

impl Transaction {
    /// The response made locally when none came in time: 408 when `Failure-Report` is yes
    /// or absent, 200 when it is `partial` or `no` (msrplib's rule).
    pub(super) fn local_timeout_response(&self, transaction_id: &str) -> Chunk {
        match self.failure_report {
            FailureReport::Yes => Chunk::response(transaction_id, 408, Some("Request Timeout".to_owned())),
            FailureReport::Partial | FailureReport::No => Chunk::response(transaction_id, 200, Some("OK".to_owned())),
        }
    }

    /// Whether the request's last byte was written (its response timer runs).
    pub(super) fn is_written(&self) -> bool {
        self.deadline.is_some()
    }

    /// Whether no response comes when it succeeds (`Failure-Report` partial or no).
    pub(super) fn succeeds_silently(&self) -> bool {
        self.failure_report != FailureReport::Yes
    }

    /// Whether a success REPORT for `message_id` covering positions `first..=last` proves
    /// this request arrived.
    pub(super) fn is_reported_by(&self, message_id: &str, first: u64, last: u64) -> bool {
        self.reported_by.as_ref().is_some_and(|(id, start, end)| id == message_id && first <= *start && last >= *end)
    }
}

/// The live transactions of a session, by transaction id.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    live: BTreeMap<String, Transaction>,
    /// Transactions whose last byte is not written yet: (stream offset of that byte, id,
    /// `opened`; a transaction id may be reused once its transaction ended).
    unwritten: VecDeque<(u64, String, u64)>,
    deadlines: BTreeMap<(Instant, u64), String>,
    /// Counter for `opened` and for deadline keys (several may share an instant).
    sequence: u64,
    /// Live transactions a success REPORT can end (`Transaction::reported_by`).
    reported_requests: usize,
}

impl Transactions {
    /// Opens a transaction for `request`, whose last byte is at stream offset `end`.
    pub(super) fn open(&mut self, request: &Chunk, kind: TransactionKind, end: u64) {
        self.sequence += 1;
        let failure_report = request.failure_report();
        let silent = failure_report != FailureReport::Yes && request.success_report() == SuccessReport::Yes;
        let reported_by = (silent && matches!(kind, TransactionKind::Request(_)))
            .then(|| {
                let message_id = request.message_id()?.to_owned();
                let start = request.byte_range().map_or(1, |range| range.start);
                Some((message_id, start, (start + request.data.len() as u64).saturating_sub(1)))
            })
            .flatten();
        self.reported_requests += usize::from(reported_by.is_some());
        let transaction = Transaction { kind, failure_report, opened: self.sequence, deadline: None, reported_by };
        self.live.insert(request.transaction_id.clone(), transaction);
        self.unwritten.push_back((end, request.transaction_id.clone(), self.sequence));
    }

    /// The request `transaction_id`, opened with its end unknown (`u64::MAX`: a chunk whose
    /// body leaves in slices, the last request opened until it ends), ends at offset `end`.
    pub(super) fn set_end(&mut self, transaction_id: &str, end: u64) {
        if let Some(entry) = self.unwritten.iter_mut().rev().find(|(_, id, _)| id == transaction_id) {
            entry.0 = end;
        }
    }

    /// The stream is written up to offset `written`: the timers of the requests it
    /// covers start, each ending at `deadline`.
    pub(super) fn arm_written(&mut self, written: u64, deadline: Instant) {
        while let Some((end, _, _)) = self.unwritten.front() {
            if *end > written {
                break;
            }
            let Some((_, transaction_id, opened)) = self.unwritten.pop_front() else { break };
            // A transaction answered before its write was acknowledged has left `live`
            // (and a new one may have taken its id).
            let live = self.live.get_mut(&transaction_id).filter(|transaction| transaction.opened == opened);
            if let Some(transaction) = live {
                self.sequence += 1;
                let key = (deadline, self.sequence);
                transaction.deadline = Some(key);
                self.deadlines.insert(key, transaction_id);
            }
        }
    }

    /// Ends the transaction `transaction_id` (its response arrived).
    pub(super) fn take(&mut self, transaction_id: &str) -> Option<Transaction> {
        let transaction = self.remove_live(transaction_id)?;
        if let Some(key) = transaction.deadline {
            self.deadlines.remove(&key);
        }
        Some(transaction)
    }

    /// Removes a live transaction, keeping the count of those a REPORT can end.
    fn remove_live(&mut self, transaction_id: &str) -> Option<Transaction> {
        let transaction = self.live.remove(transaction_id)?;
        self.reported_requests -= usize::from(transaction.reported_by.is_some());
        Some(transaction)
    }

    /// Whether a success REPORT may end a request of the application.
    pub(super) fn has_reported_requests(&self) -> bool {
        self.reported_requests > 0
    }

    /// Ends and returns, in the order they were opened, the transactions that succeed
    /// silently and match `matches`.
    pub(super) fn take_silent(&mut self, matches: impl Fn(&Transaction) -> bool) -> Vec<(String, Transaction)> {
        let mut ids: Vec<_> = self
            .live
            .iter()
            .filter(|(_, transaction)| transaction.succeeds_silently() && matches(transaction))
            .map(|(transaction_id, transaction)| (transaction.opened, transaction_id.clone()))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|(_, transaction_id)| {
                let transaction = self.take(&transaction_id)?;
                Some((transaction_id, transaction))
            })
            .collect()
    }

    /// Ends and returns the first transaction whose timer ran out at `now`.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<(String, Transaction)> {
        loop {
            let entry = self.deadlines.first_entry()?;
            let key = *entry.key();
            if key.0 > now {
                return None;
            }
            let transaction_id = entry.remove();
            // Every armed timer belongs to a live transaction (`take` removes its key);
            // checking keeps a stale key from stopping the others.
            if self.live.get(&transaction_id).is_some_and(|transaction| transaction.deadline == Some(key)) {
                let mut transaction = self.remove_live(&transaction_id)?;
                transaction.deadline = None;
                return Some((transaction_id, transaction));
            }
        }
    }

    /// Whether a response is still to come: a request not yet written, or one with
    /// `Failure-Report: yes` (with `partial` or `no` a success is silent).
    pub(super) fn awaits_response(&self) -> bool {
        self.live
            .values()
            .any(|transaction| transaction.deadline.is_none() || transaction.failure_report == FailureReport::Yes)
    }

    /// The earliest armed timer.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|((deadline, _), _)| *deadline)
    }

    /// Ends every transaction, in the order they were opened.
    pub(super) fn drain(&mut self) -> Vec<(String, Transaction)> {
        self.reported_requests = 0;
        self.unwritten.clear();
        self.deadlines.clear();
        let mut all: Vec<_> = std::mem::take(&mut self.live).into_iter().collect();
        all.sort_by_key(|(_, transaction)| transaction.opened);
        all
    }

    pub(super) fn contains(&self, transaction_id: &str) -> bool {
        self.live.contains_key(transaction_id)
    }

    pub(super) fn len(&self) -> usize {
        self.live.len()
    }
}
