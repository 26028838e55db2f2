//! `msrp decode`: the chunks of a capture read from standard input.

use std::io::Read;
use std::process::ExitCode;

use bytes::Bytes;
use msrp_tokio::core::{Decoded, Decoder, DecoderLimits};

/// Prints one line per chunk (transaction id, method or status, body size, flag) and
/// every error; fails when there was one.
pub(crate) fn run() -> ExitCode {
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
