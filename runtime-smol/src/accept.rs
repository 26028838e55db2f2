//! Accepting connections without dying of a passing fault: which accept errors are
//! worth waiting out, and the accept loop step that waits them out.
//!
//! A listener's `accept` fails for reasons that pass: the process is out of file
//! descriptors (EMFILE, ENFILE) until sessions end, a peer gave up while queued
//! (ECONNABORTED), memory or buffers ran short. Ending the accept loop on those turns a
//! moment of overload into "connection refused" for good, so they are logged and
//! waited out with a short, growing pause; any other error ends the loop.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::runtime::{BoxStream, Listener, Runtime, io_phrase};

/// The pause after the first transient accept error; it doubles with each error in a
/// row, up to [`MAX_ACCEPT_PAUSE`], and starts over after a connection is accepted.
pub const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between accepts after transient errors.
pub const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Error numbers std gives no [`io::ErrorKind`] of their own, that accept returns for a
/// passing shortage: ENFILE and EMFILE (descriptors), ENOBUFS, EPROTO (a peer's protocol
/// error while queued).
#[cfg(any(target_os = "linux", target_os = "android"))]
const TRANSIENT_CODES: &[i32] = &[23, 24, 105, 71];
#[cfg(any(target_os = "macos", target_os = "ios"))]
const TRANSIENT_CODES: &[i32] = &[23, 24, 55, 100];
#[cfg(any(target_os = "freebsd", target_os = "dragonfly", target_os = "netbsd", target_os = "openbsd"))]
const TRANSIENT_CODES: &[i32] = &[23, 24, 55, 92];
/// WSAEMFILE, WSAENOBUFS.
#[cfg(windows)]
const TRANSIENT_CODES: &[i32] = &[10024, 10055];
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    windows
)))]
const TRANSIENT_CODES: &[i32] = &[23, 24];

/// Whether an error of a listener's `accept` passes, so that accepting again later can
/// work: out of file descriptors (EMFILE, ENFILE), a connection aborted or reset while
/// queued, an interrupted call, out of memory or buffers (ENOMEM, ENOBUFS), EPROTO, a
/// firewall's EPERM, `WouldBlock` and `TimedOut`. Anything else (a closed or invalid
/// socket, `Other`) is fatal: the listener will not accept again.
pub fn is_transient_accept_error(error: &io::Error) -> bool {
    use io::ErrorKind::{
        ConnectionAborted, ConnectionReset, Interrupted, OutOfMemory, PermissionDenied, TimedOut, WouldBlock,
    };
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | OutOfMemory | PermissionDenied | TimedOut | WouldBlock
    ) || error.raw_os_error().is_some_and(|code| TRANSIENT_CODES.contains(&code))
}

/// The next connection of `listener`. Transient errors are logged and waited out: the
/// pause in `pause` doubles with each, up to [`MAX_ACCEPT_PAUSE`], and is back to
/// [`FIRST_ACCEPT_PAUSE`] after a success. Returns the first fatal error.
pub(crate) async fn accept_next<R: Runtime>(
    runtime: &R,
    listener: &mut dyn Listener,
    pause: &mut Duration,
) -> io::Result<(BoxStream, SocketAddr)> {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                *pause = FIRST_ACCEPT_PAUSE;
                return Ok(accepted);
            }
            Err(error) if is_transient_accept_error(&error) => {
                let address = listener.local_addr().map(|address| address.to_string()).unwrap_or_default();
                tracing::warn!(
                    address,
                    error = io_phrase(&error),
                    pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    "accepting a connection failed for now; accepting again after a pause"
                );
                runtime.sleep_until(runtime.now() + *pause).await;
                *pause = (*pause * 2).min(MAX_ACCEPT_PAUSE);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_shortages_are_transient_and_a_broken_socket_is_not() {
        for transient in [
            io::Error::from_raw_os_error(24),
            io::Error::from_raw_os_error(23),
            io::Error::from(io::ErrorKind::ConnectionAborted),
            io::Error::from(io::ErrorKind::Interrupted),
            io::Error::from(io::ErrorKind::WouldBlock),
            io::Error::from(io::ErrorKind::TimedOut),
        ] {
            assert!(is_transient_accept_error(&transient), "{transient}");
        }
        for fatal in [
            io::Error::other("the listening socket is gone"),
            io::Error::from(io::ErrorKind::InvalidInput),
            io::Error::from(io::ErrorKind::NotConnected),
        ] {
            assert!(!is_transient_accept_error(&fatal), "{fatal}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_error_numbers_are_classified() {
        // ECONNABORTED, ENOBUFS, EPROTO, EPERM, ENOMEM, EINTR pass; EBADF, EINVAL, ENOTSOCK do not.
        for code in [103, 105, 71, 1, 12, 4] {
            assert!(is_transient_accept_error(&io::Error::from_raw_os_error(code)), "{code}");
        }
        for code in [9, 22, 88] {
            assert!(!is_transient_accept_error(&io::Error::from_raw_os_error(code)), "{code}");
        }
    }
}
