//! The spec's "Creating an outbound connection" example: `ConnectorDirect` → `Session`, send
//! "Hello world!", print what comes back.
//!
//! `cargo run -p msrp-tokio --example outbound [LOCAL_URI [REMOTE_PATH]]`; the defaults
//! match the `inbound` example's, so start that one first and run this one bare. The
//! paths stand in for what SDP would carry.

use bytes::Bytes;
use msrp_tokio::core::Uri;
use msrp_tokio::{AcceptTypes, ConnectorDirect, Session, Tokio};

const LOCAL: &str = "msrp://127.0.0.1:2855/outbound1;tcp";
const REMOTE: &str = "msrp://127.0.0.1:2856/inbound1;tcp";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let local: Uri = args.next().as_deref().unwrap_or(LOCAL).parse()?;
    let remote_path = Uri::parse_path(args.next().as_deref().unwrap_or(REMOTE))?;
    let mut connector = ConnectorDirect::new(Tokio, None, false);
    let full_local_path = connector.prepare(Some(local));
    println!("local path: {}", full_local_path[0]);
    let transport = match connector.complete(remote_path).await {
        Ok(transport) => transport,
        Err(error) => {
            connector.cleanup();
            return Err(error.into());
        }
    };
    let session = Session::new(transport, AcceptTypes::any(), None);
    let message = session.send_message("text/plain", Bytes::from_static(b"Hello world!")).await?;
    println!("sent: {:?}", message.outcome().await);
    match session.receive_chunk().await {
        Ok(chunk) => println!("Got data: {}", String::from_utf8_lossy(&chunk.data)),
        Err(error) => println!("Error: {error}"),
    }
    session.shutdown(true).await;
    Ok(())
}
