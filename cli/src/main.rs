//! The `msrp` command.
//!
//! - `msrp demo`: MSRP traffic over a real TCP connection on 127.0.0.1 with nothing to
//!   configure: chat messages and a 256 MiB generated file are cut into SEND chunks,
//!   streamed through the decoder on the receiving side, verified byte for byte and
//!   answered with 200 responses. Exits non-zero unless everything arrived intact.
//! - `msrp decode`: reads MSRP bytes (a capture) from standard input and prints one
//!   line per chunk, or the first error with its position.
//!
//! `send` and `recv`, built on the session layer, arrive with the runtime adapters.

mod demo;

use std::io::Read;
use std::process::ExitCode;

use bytes::Bytes;
use msrp_core::{Decoded, Decoder, DecoderLimits};

const USAGE: &str = "usage: msrp demo | msrp decode < capture";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["demo"] => demo::run(),
        ["decode"] => decode_stdin(),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn decode_stdin() -> ExitCode {
    let mut input = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("msrp: cannot read standard input: {error}");
        return ExitCode::FAILURE;
    }
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::from(input));
    let mut body = 0usize;
    let mut status = ExitCode::SUCCESS;
    while let Some(item) = decoder.poll() {
        match item {
            Ok(Decoded::Head(head)) => {
                body = 0;
                let what = match (head.method(), head.code()) {
                    (Some(method), _) => method.to_string(),
                    (None, code) => format!("{} {}", code.unwrap_or_default(), head.comment().unwrap_or_default()),
                };
                print!("{} {what}", head.transaction_id);
            }
            Ok(Decoded::Data(data)) => body += data.len(),
            Ok(Decoded::End(flag)) => println!(" body={body} flag={flag}"),
            Err(error) => {
                eprintln!("msrp: {error}");
                status = ExitCode::FAILURE;
            }
        }
    }
    if let Some(error) = decoder.finish() {
        eprintln!("msrp: {error}");
        status = ExitCode::FAILURE;
    }
    status
}
