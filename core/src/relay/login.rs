//! [`RelayLogin`]: the relay client over raw bytes, for the time before a session exists.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::codec::{Decoded, Decoder, DecoderLimits};
use crate::session::Input;
use crate::uri::Uri;

use super::{RelayClient, RelayError, RelayEvent};

/// What a [`RelayLogin`] wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum LoginOutput {
    /// Write these bytes (an encoded AUTH) after everything written before.
    Transmit(Bytes),
    /// Every relay granted a path; `local_path` goes into SDP (Use-Path reversed, then our
    /// URI). Comes once.
    Authorized {
        /// The path for SDP.
        local_path: Vec<Uri>,
    },
    /// The relay client failed (before authorization, or a refresh while the login still
    /// runs); comes at most once. [`RelayError::Closed`] when the connection went away.
    Failed(RelayError),
}

/// The relay client over the bytes of a connection to the nearest relay, used by an
/// adapter's `prepare()` before the session exists.
///
/// Run loop: hand it [`Input`]s with [`RelayLogin::handle_input`] (nothing is sent before
/// [`Input::Connected`] or the first bytes read), drain [`RelayLogin::poll_output`] until
/// `None` after each input or timeout, write every [`LoginOutput::Transmit`] in order, and
/// sleep until the next input or [`RelayLogin::poll_timeout`], then
/// [`RelayLogin::handle_timeout`]. Once [`LoginOutput::Authorized`] came, take
/// [`RelayLogin::into_parts`] and give the session the client
/// ([`Session::set_relay`](crate::session::Session::set_relay)) and the bytes (as
/// [`Input::Received`], in order).
///
/// Responses to the client's AUTHs are consumed. Everything else read (a request from the
/// peer that arrived early, a stray response, bytes of a chunk not complete yet) is kept
/// byte for byte for the session.
#[derive(Debug)]
pub struct RelayLogin {
    client: RelayClient,
    decoder: Decoder,
    connected: bool,
    /// Bytes received from stream offset `window_start` on, not yet known to be kept.
    window: VecDeque<Bytes>,
    window_start: u64,
    /// Bytes before `window_start` that were not answers to the client: the session's.
    kept: Vec<Bytes>,
    /// Bytes received in all.
    received: u64,
    /// The chunk being decoded: its stream offset and head.
    current: Option<(u64, Chunk)>,
    authorized_told: bool,
    failed_told: bool,
}

impl RelayLogin {
    /// Wraps a client (fresh from [`RelayClient::new`]) with a decoder of default limits.
    pub fn new(client: RelayClient) -> Self {
        Self {
            client,
            decoder: Decoder::new(DecoderLimits::default()),
            connected: false,
            window: VecDeque::new(),
            window_start: 0,
            kept: Vec::new(),
            received: 0,
            current: None,
            authorized_told: false,
            failed_told: false,
        }
    }

    /// Handles an input at `now`: [`Input::Connected`] lets the first AUTH go;
    /// [`Input::Received`] bytes are decoded (they also prove the connection is up), each
    /// response handed to the client; [`Input::Written`] is not needed (the AUTH timer runs
    /// from when the AUTH was handed out); [`Input::Closed`] fails the login with
    /// [`RelayError::Closed`]. Drain [`RelayLogin::poll_output`] afterwards.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected => self.connected = true,
            Input::Received(data) => {
                self.connected = true;
                self.on_received(now, data);
            }
            Input::Written(_) => {}
            Input::Closed => self.client.handle_closed(now),
        }
    }

    /// Runs the client's timers due at `now` (the AUTH timeout, refreshes); afterwards
    /// [`RelayLogin::poll_timeout`] is later than `now`. Drain [`RelayLogin::poll_output`]
    /// afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
    }

    /// The next output, or `None` until the next input or timeout. AUTHs come only once
    /// connected.
    pub fn poll_output(&mut self, now: Instant) -> Option<LoginOutput> {
        while let Some(event) = self.client.poll_event() {
            match event {
                RelayEvent::Authorized { .. } if !self.authorized_told => {
                    self.authorized_told = true;
                    if let Some(local_path) = self.client.local_path() {
                        return Some(LoginOutput::Authorized { local_path });
                    }
                }
                RelayEvent::Failed(error) if !self.failed_told => {
                    self.failed_told = true;
                    return Some(LoginOutput::Failed(error));
                }
                RelayEvent::Authorized { .. } | RelayEvent::Refreshed { .. } | RelayEvent::Failed(_) => {}
            }
        }
        if !self.connected {
            return None;
        }
        self.client.poll_request(now).map(|chunk| LoginOutput::Transmit(chunk.encode()))
    }

    /// The earliest instant [`RelayLogin::handle_timeout`] has work; `None` when no timer
    /// runs (an AUTH not yet handed out by `poll_output` has none).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// The client, and every byte read that was not an answer to one of its AUTHs, in
    /// order (a chunk cut short included): feed them to the session.
    pub fn into_parts(self) -> (RelayClient, Vec<Bytes>) {
        let mut bytes = self.kept;
        bytes.extend(self.window.into_iter().filter(|part| !part.is_empty()));
        (self.client, bytes)
    }

    fn on_received(&mut self, now: Instant, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.received += data.len() as u64;
        self.window.push_back(data.clone());
        self.decoder.feed(data);
        while let Some(item) = self.decoder.poll() {
            match item {
                Ok(Decoded::Head(head)) => self.current = Some((self.decoder.chunk_offset(), head)),
                Ok(Decoded::Data(_)) => {}
                Ok(Decoded::End(_)) => {
                    let Some((start, head)) = self.current.take() else { continue };
                    if !head.is_request() && self.client.handle_response(now, &head) {
                        // Right after an end-line the decoder holds nothing back: what it
                        // has not taken follows the chunk.
                        let end = self.received - self.decoder.buffered() as u64;
                        self.consume(start, end);
                    }
                }
                Err(error) => {
                    self.current = None;
                    if error.closes_connection() {
                        self.client.handle_unintelligible(now, error.to_string());
                        break;
                    }
                }
            }
        }
    }

    /// Bytes `start..end` were an answer to the client: what came before them is kept for
    /// the session, they are dropped.
    fn consume(&mut self, start: u64, end: u64) {
        let before = start.saturating_sub(self.window_start);
        self.kept.extend(take_front(&mut self.window, before));
        take_front(&mut self.window, end.saturating_sub(start));
        self.window_start = end;
    }
}

/// Takes the first `n` bytes of `parts` (splitting a part, without copying).
fn take_front(parts: &mut VecDeque<Bytes>, mut n: u64) -> Vec<Bytes> {
    let mut taken = Vec::new();
    while n > 0 {
        let Some(front) = parts.front_mut() else { break };
        let len = front.len() as u64;
        if len <= n {
            n -= len;
            taken.extend(parts.pop_front());
        } else {
            taken.push(front.split_to(n as usize));
            n = 0;
        }
    }
    taken
}
