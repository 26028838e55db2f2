//! Traffic logging: the eleven methods of msrplib's logger interface as a trait.
//!
//! A [`Session`](crate::session::Session) calls its logger for the start, the data and
//! the end of every chunk it sends or receives, and for its own debug … fatal messages.
//! [`NullLogger`] drops everything; [`TracingLogger`] turns each call into a `tracing`
//! event (chunk traffic at `TRACE` under the target `msrp::traffic`).

use crate::chunk::Chunk;
use crate::transport::Transport;

/// A traffic logger (msrplib's Logging interface). Every method has an empty default, so
/// a logger implements only what it wants.
#[doc(alias = "Logging")]
pub trait TrafficLogger: Send {
    /// Whether the chunk methods are wanted at all. Building the text of a received
    /// chunk's start costs an encoding, so a session skips it when this is `false`.
    fn logs_traffic(&self) -> bool {
        true
    }

    /// The start of a new chunk was received: `data` is its start line and headers.
    fn received_new_chunk(&mut self, data: &[u8], transport: &Transport, chunk: &Chunk) {
        let _ = (data, transport, chunk);
    }

    /// Body bytes of the chunk announced by `received_new_chunk` were received.
    fn received_chunk_data(&mut self, data: &[u8], transport: &Transport, transaction_id: &str) {
        let _ = (data, transport, transaction_id);
    }

    /// The chunk ended: `data` is its end-line.
    fn received_chunk_end(&mut self, data: &[u8], transport: &Transport, transaction_id: &str) {
        let _ = (data, transport, transaction_id);
    }

    /// The start of a new chunk was sent: `data` is what went out with it.
    fn sent_new_chunk(&mut self, data: &[u8], transport: &Transport, chunk: &Chunk) {
        let _ = (data, transport, chunk);
    }

    /// Body bytes of the chunk announced by `sent_new_chunk` were sent.
    fn sent_chunk_data(&mut self, data: &[u8], transport: &Transport, transaction_id: &str) {
        let _ = (data, transport, transaction_id);
    }

    /// The end of a sent chunk: `data` is its end-line.
    fn sent_chunk_end(&mut self, data: &[u8], transport: &Transport, transaction_id: &str) {
        let _ = (data, transport, transaction_id);
    }

    /// A debug-level message of the library.
    fn debug(&mut self, message: &str) {
        let _ = message;
    }

    /// An info-level message of the library.
    fn info(&mut self, message: &str) {
        let _ = message;
    }

    /// A warning of the library (e.g. a peer's malformed chunk that was answered).
    fn warn(&mut self, message: &str) {
        let _ = message;
    }

    /// An error of the library (e.g. a transaction that failed).
    fn error(&mut self, message: &str) {
        let _ = message;
    }

    /// A fatal error: the session ends.
    fn fatal(&mut self, message: &str) {
        let _ = message;
    }
}

/// A logger that drops everything (python-application's `Null`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullLogger;

impl TrafficLogger for NullLogger {
    fn logs_traffic(&self) -> bool {
        false
    }
}

/// A logger that emits `tracing` events: traffic at `TRACE` (target `msrp::traffic`, the
/// text shown lossily as UTF-8), library messages at their own level (`fatal` as `ERROR`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingLogger;

impl TracingLogger {
    fn traffic(direction: &str, what: &str, transport: &Transport, data: &[u8]) {
        tracing::trace!(
            target: "msrp::traffic",
            local = %transport.local_uri(),
            remote = %transport.remote_uri(),
            "{direction} {what} ({} bytes): {}",
            data.len(),
            String::from_utf8_lossy(data)
        );
    }
}

impl TrafficLogger for TracingLogger {
    fn logs_traffic(&self) -> bool {
        tracing::enabled!(target: "msrp::traffic", tracing::Level::TRACE)
    }

    fn received_new_chunk(&mut self, data: &[u8], transport: &Transport, _chunk: &Chunk) {
        Self::traffic("received", "chunk start", transport, data);
    }

    fn received_chunk_data(&mut self, data: &[u8], transport: &Transport, _transaction_id: &str) {
        Self::traffic("received", "chunk data", transport, data);
    }

    fn received_chunk_end(&mut self, data: &[u8], transport: &Transport, _transaction_id: &str) {
        Self::traffic("received", "chunk end", transport, data);
    }

    fn sent_new_chunk(&mut self, data: &[u8], transport: &Transport, _chunk: &Chunk) {
        Self::traffic("sent", "chunk start", transport, data);
    }

    fn sent_chunk_data(&mut self, data: &[u8], transport: &Transport, _transaction_id: &str) {
        Self::traffic("sent", "chunk data", transport, data);
    }

    fn sent_chunk_end(&mut self, data: &[u8], transport: &Transport, _transaction_id: &str) {
        Self::traffic("sent", "chunk end", transport, data);
    }

    fn debug(&mut self, message: &str) {
        tracing::debug!(target: "msrp", "{message}");
    }

    fn info(&mut self, message: &str) {
        tracing::info!(target: "msrp", "{message}");
    }

    fn warn(&mut self, message: &str) {
        tracing::warn!(target: "msrp", "{message}");
    }

    fn error(&mut self, message: &str) {
        tracing::error!(target: "msrp", "{message}");
    }

    fn fatal(&mut self, message: &str) {
        tracing::error!(target: "msrp", fatal = true, "{message}");
    }
}
