//! `--trace`: every chunk sent and received, printed on standard error as it goes (as
//! msrplib's traffic Logger does), through the core's `TrafficLogger`. The library's own
//! messages go to `tracing` (shown with `RUST_LOG`, e.g. `RUST_LOG=msrp=debug`).

use std::fmt::Write as _;
use std::io::Write as _;

use msrp_tokio::core::log::{TracingLogger, TrafficLogger};
use msrp_tokio::core::{Chunk, Transport};

/// Body bytes shown of each chunk; the rest is counted, not shown.
pub(crate) const BODY_SHOWN: usize = 256;

/// The logger for a session: the chunk printer with `--trace`, else `tracing` events
/// (the traffic under the target `msrp::traffic` at TRACE level).
pub(crate) fn logger(trace: bool) -> Box<dyn TrafficLogger> {
    if trace { Box::new(ChunkPrinter::default()) } else { Box::new(TracingLogger) }
}

/// Prints each chunk as one block: a line saying which way it went, its start line and
/// headers, the first [`BODY_SHOWN`] bytes of its body with a count of the rest (a body
/// that is not text is only counted), and its end-line.
#[derive(Debug, Default)]
pub(crate) struct ChunkPrinter {
    /// The chunk being received: its block so far and what of its body was shown.
    receiving: Option<(String, Body)>,
}

/// What of a chunk's body a block shows.
#[derive(Debug, Default, Clone)]
struct Body {
    shown: usize,
    hidden: u64,
    binary: bool,
}

impl Body {
    /// Shows what is left of the first [`BODY_SHOWN`] bytes of `data` and counts the rest;
    /// the first bytes decide whether the body is text.
    fn add(&mut self, out: &mut String, data: &[u8]) {
        if self.shown == 0 && self.hidden == 0 {
            self.binary = !looks_like_text(&data[..data.len().min(BODY_SHOWN)]);
        }
        let take = if self.binary { 0 } else { data.len().min(BODY_SHOWN - self.shown) };
        show(out, &data[..take]);
        self.shown += take;
        self.hidden += (data.len() - take) as u64;
    }

    /// The note of what was not shown.
    fn finish(&self, out: &mut String) {
        if self.hidden == 0 {
            return;
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        if self.binary {
            let _ = writeln!(out, "[{} body bytes not shown: binary data]", self.hidden);
        } else {
            let _ = writeln!(out, "[… {} more body bytes not shown]", self.hidden);
        }
    }
}

/// Whether a body's first bytes read as text: UTF-8 (a character cut at the end is fine)
/// without control characters but tab and line ends.
fn looks_like_text(data: &[u8]) -> bool {
    let valid = match std::str::from_utf8(data) {
        Ok(_) => true,
        Err(error) => error.error_len().is_none(),
    };
    valid && !data.iter().any(|&byte| byte < b' ' && !matches!(byte, b'\r' | b'\n' | b'\t') || byte == 0x7F)
}

impl ChunkPrinter {
    fn print(block: &str) {
        // One write per chunk, so that blocks never interleave; a closed standard error
        // is no reason to stop.
        let _ = std::io::stderr().lock().write_all(block.as_bytes());
    }
}

/// The first line of a block: where a sent chunk went, or where one was received (its
/// From-Path says who sent it; it need not be the session's peer).
fn banner(direction: &str, transport: &Transport) -> String {
    match direction {
        "sent" => format!("--- sent to {} ---\n", transport.remote_uri()),
        _ => format!("--- received on {} ---\n", transport.local_uri()),
    }
}

/// Wire bytes as text: CRLF as a line end, other bytes outside printable text as `\xNN`
/// (UTF-8 text shows as itself).
fn show(out: &mut String, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\t' => out.push(c),
            '\u{FFFD}' => out.push_str("\\x??"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The end-line: the CRLF before it ends the line already shown.
fn show_end(out: &mut String, end_line: &[u8]) {
    let end_line = if out.ends_with('\n') { end_line.strip_prefix(b"\r\n").unwrap_or(end_line) } else { end_line };
    show(out, end_line);
}

impl TrafficLogger for ChunkPrinter {
    fn received_new_chunk(&mut self, data: &[u8], transport: &Transport, _chunk: &Chunk) {
        let mut block = banner("received", transport);
        show(&mut block, data);
        self.receiving = Some((block, Body::default()));
    }

    fn received_chunk_data(&mut self, data: &[u8], _transport: &Transport, _transaction_id: &str) {
        if let Some((block, body)) = &mut self.receiving {
            body.add(block, data);
        }
    }

    fn received_chunk_end(&mut self, data: &[u8], _transport: &Transport, _transaction_id: &str) {
        let Some((mut block, body)) = self.receiving.take() else { return };
        body.finish(&mut block);
        show_end(&mut block, data);
        Self::print(&block);
    }

    fn sent_new_chunk(&mut self, _data: &[u8], transport: &Transport, chunk: &Chunk) {
        // The chunk itself rather than its wire parts: a small body travels inside the
        // head, and would escape the abbreviation.
        let mut block = banner("sent", transport);
        show(&mut block, &chunk.encode_start());
        let mut body = Body::default();
        body.add(&mut block, &chunk.data);
        body.finish(&mut block);
        show_end(&mut block, &chunk.encode_end(chunk.contflag));
        Self::print(&block);
    }

    fn debug(&mut self, message: &str) {
        TracingLogger.debug(message);
    }

    fn info(&mut self, message: &str) {
        TracingLogger.info(message);
    }

    fn warn(&mut self, message: &str) {
        TracingLogger.warn(message);
    }

    fn error(&mut self, message: &str) {
        TracingLogger.error(message);
    }

    fn fatal(&mut self, message: &str) {
        TracingLogger.fatal(message);
    }
}

/// Sends `tracing` events to standard error, filtered by `RUST_LOG` (nothing without it).
pub(crate) fn init_diagnostics() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let filter = EnvFilter::builder().with_default_directive(LevelFilter::OFF.into()).from_env_lossy();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use msrp_tokio::core::{ContinuationFlag, IdGenerator, Method, Uri};

    fn transport() -> Transport {
        let local: Uri = "msrp://127.0.0.1:2855/alice;tcp".parse().unwrap();
        let remote: Uri = "msrp://127.0.0.1:2856/bob;tcp".parse().unwrap();
        Transport::new(vec![local], vec![remote], IdGenerator::seed_from_u64(1), false).unwrap()
    }

    /// Issue 12 §3 trace: a block per chunk, a long text body cut to its first bytes
    /// with a count of the rest, a binary body only counted.
    #[test]
    fn issue12_trace_abbreviates_long_bodies_and_counts_binary_ones() {
        let transport = transport();
        let mut chunk = Chunk::request("tr1", Method::Send);
        chunk.headers.set(msrp_tokio::core::header::HeaderName::ContentType, "text/plain");
        chunk.data = Bytes::from(vec![b'a'; 1000]);
        let mut block = banner("sent", &transport);
        show(&mut block, &chunk.encode_start());
        let mut body = Body::default();
        body.add(&mut block, &chunk.data);
        body.finish(&mut block);
        show_end(&mut block, &chunk.encode_end(ContinuationFlag::More));
        let expected = format!(
            "--- sent to msrp://127.0.0.1:2856/bob;tcp ---\nMSRP tr1 SEND\nContent-Type: text/plain\n\n{}\n[… 744 more body bytes not shown]\n-------tr1+\n",
            "a".repeat(256)
        );
        assert_eq!(block, expected);

        let mut printer = ChunkPrinter::default();
        printer.received_new_chunk(b"MSRP tr2 SEND\r\nContent-Type: image/png\r\n\r\n", &transport, &chunk);
        printer.received_chunk_data(&[0x89, b'P', b'N', b'G', 0, 0], &transport, "tr2");
        printer.received_chunk_data(&[0; 300], &transport, "tr2");
        let (mut block, body) = printer.receiving.take().unwrap();
        body.finish(&mut block);
        show_end(&mut block, b"\r\n-------tr2$\r\n");
        assert_eq!(
            block,
            "--- received on msrp://127.0.0.1:2855/alice;tcp ---\nMSRP tr2 SEND\nContent-Type: image/png\n\n[306 body bytes not shown: binary data]\n-------tr2$\n"
        );
        // A bodiless chunk's end-line follows its headers.
        let mut block = String::new();
        show(&mut block, b"MSRP tr3 200 OK\r\n");
        show_end(&mut block, b"\r\n-------tr3$\r\n");
        assert_eq!(block, "MSRP tr3 200 OK\n-------tr3$\n");
    }
}
