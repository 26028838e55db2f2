//! The cross-runtime scenario suites' scaffolding: [`run`] runs one scenario, and
//! `runtimes!`, `pairs!` and `every_pair!` make one test per runtime or runtime pair.

use std::future::Future;

pub use msrp_blocking::Threads;
pub use msrp_smol::Smol;
pub use msrp_tokio::Tokio;

/// Runs a scenario on the test thread with a tokio runtime entered, so that tokio's side
/// can spawn; smol and threads need nothing.
pub fn run<F: Future>(scenario: F) -> F::Output {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _context = tokio.enter();
    futures::executor::block_on(scenario)
}

/// Sends one SEND with a body, from a stranger to `to`, over a raw socket to `port` on
/// 127.0.0.1, and returns everything read back until the server closes.
pub fn raw_exchange(port: u16, to: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let send = format!(
        "MSRP stranger SEND\r\nTo-Path: {to}\r\nFrom-Path: msrp://127.0.0.1:9999/stranger;tcp\r\nMessage-ID: m1234\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------stranger$\r\n"
    );
    stream.write_all(send.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Calls `$scenario(runtime)` on each runtime (tokio, smol, threads), each in its own test.
#[macro_export]
macro_rules! runtimes {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn tokio() {
                $crate::scenario::run(super::$scenario($crate::scenario::Tokio));
            }
            #[test]
            fn smol() {
                $crate::scenario::run(super::$scenario($crate::scenario::Smol));
            }
            #[test]
            fn threads() {
                $crate::scenario::run(super::$scenario($crate::scenario::Threads));
            }
        }
    };
}

/// Calls `$scenario::<A, B>(a, b)` for the listed runtime pairs, each in its own test:
/// `pairs!(scenario: tokio_smol => (Tokio, Smol), …)`.
#[macro_export]
macro_rules! pairs {
    ($scenario:ident: $($name:ident => ($a:expr, $b:expr)),+ $(,)?) => {
        mod $scenario {
            use super::*;
            $(#[test] fn $name() { $crate::scenario::run(super::$scenario($a, $b)); })+
        }
    };
}

/// `pairs!` over all nine pairs of tokio, smol and threads.
#[macro_export]
macro_rules! every_pair {
    ($scenario:ident) => {
        $crate::pairs!($scenario:
            tokio_tokio => ($crate::scenario::Tokio, $crate::scenario::Tokio),
            smol_smol => ($crate::scenario::Smol, $crate::scenario::Smol),
            threads_threads => ($crate::scenario::Threads, $crate::scenario::Threads),
            tokio_smol => ($crate::scenario::Tokio, $crate::scenario::Smol),
            smol_tokio => ($crate::scenario::Smol, $crate::scenario::Tokio),
            tokio_threads => ($crate::scenario::Tokio, $crate::scenario::Threads),
            threads_tokio => ($crate::scenario::Threads, $crate::scenario::Tokio),
            smol_threads => ($crate::scenario::Smol, $crate::scenario::Threads),
            threads_smol => ($crate::scenario::Threads, $crate::scenario::Smol),
        );
    };
}
