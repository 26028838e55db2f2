//! The `msrp` command. For now it decodes MSRP traffic read from standard input and
//! prints one line per chunk; `send`, `recv` and `demo` arrive with the adapters.

use std::io::Read;

use bytes::Bytes;
use msrp_core::{Decoded, Decoder, DecoderLimits};

fn main() -> std::process::ExitCode {
    let mut input = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("msrp: cannot read standard input: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let mut decoder = Decoder::new(DecoderLimits::default());
    decoder.feed(Bytes::from(input));
    let mut body = 0usize;
    while let Some(item) = decoder.poll() {
        match item {
            Ok(Decoded::Head(head)) => {
                body = 0;
                let what = head.method().map_or_else(|| format!("{:?}", head.code()), ToString::to_string);
                print!("{} {what}", head.transaction_id);
            }
            Ok(Decoded::Data(data)) => body += data.len(),
            Ok(Decoded::End(flag)) => println!(" body={body} flag={flag}"),
            Err(error) => {
                eprintln!("msrp: {error}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
