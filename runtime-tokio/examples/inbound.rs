//! The spec's "Waiting for an inbound connection" example (direct, without a relay):
//! `AcceptorDirect` → `Session`, print what arrives, answer it.
//!
//! `cargo run -p msrp-tokio --example inbound [LOCAL_URI [REMOTE_PATH]]`; the defaults
//! match the `outbound` example's. The paths stand in for what SDP would carry.

use bytes::Bytes;
use msrp_tokio::core::Uri;
use msrp_tokio::{AcceptTypes, AcceptorDirect, Session, Tokio};

const LOCAL: &str = "msrp://127.0.0.1:2856/inbound1;tcp";
const REMOTE: &str = "msrp://127.0.0.1:2855/outbound1;tcp";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let local: Uri = args.next().as_deref().unwrap_or(LOCAL).parse()?;
    let remote_path = Uri::parse_path(args.next().as_deref().unwrap_or(REMOTE))?;
    let mut acceptor = AcceptorDirect::new(Tokio, None, false);
    let full_local_path = acceptor.prepare(Some(local)).await?;
    println!("listening; local path: {}", full_local_path[0]);
    let transport = match acceptor.complete(remote_path).await {
        Ok(transport) => transport,
        Err(error) => {
            acceptor.cleanup();
            return Err(error.into());
        }
    };
    let session = Session::new(transport, AcceptTypes::any(), None);
    loop {
        match session.receive_chunk().await {
            Ok(chunk) => {
                println!("Got data: {}", String::from_utf8_lossy(&chunk.data));
                session.send_message("text/plain", Bytes::from_static(b"Hello back!")).await?;
            }
            Err(error) => {
                println!("Session ended: {error}");
                return Ok(());
            }
        }
    }
}
