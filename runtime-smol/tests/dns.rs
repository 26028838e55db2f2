//! Relay discovery by SRV records (RFC 4976 §8) against a real DNS server on 127.0.0.1:
//! hickory's authoritative server with an in-memory zone, asked over UDP and TCP.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use hickory_server::ServerFuture;
use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::LowerName;
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::store::in_memory::InMemoryAuthority;
use msrp_smol::lookup_relay;

const ZONE: &str = "
$ORIGIN example.test.
$TTL 300
@            IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@            IN NS  ns
ns           IN A   127.0.0.1
; Listed before the better one: the order must come from the priorities.
_msrp._tcp   IN SRV 20 10 2857 relay2
_msrp._tcp   IN SRV 10 60 2855 relay1
_msrps._tcp  IN SRV 10 0  2856 relay1
relay1       IN A   127.0.0.11
relay2       IN A   127.0.0.12
plain        IN A   127.0.0.13
";

/// Relays of a large farm: their SRV answer (1.9 kB) is too large for one UDP answer (1232
/// bytes with EDNS0), so the server truncates it and the resolver asks again over TCP.
const FARM_SIZE: u16 = 40;

fn zone() -> String {
    let mut zone = ZONE.to_owned();
    for relay in 0..FARM_SIZE {
        writeln!(zone, "_msrp._tcp.farm IN SRV 5 1 {} farm-relay-{relay}", 3000 + relay).unwrap();
    }
    zone
}

/// The address of the test's DNS server (UDP and TCP on one port), started once for all
/// tests on a thread of its own.
fn dns_server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let (started, address) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let (origin, records) = Parser::new(zone(), None, None).parse().expect("the zone parses");
                let authority = InMemoryAuthority::new(origin.clone(), records, ZoneType::Primary, false).unwrap();
                let mut catalog = Catalog::new();
                catalog.upsert(LowerName::new(&origin), vec![Arc::new(authority)]);
                let mut server = ServerFuture::new(catalog);
                let (udp, tcp) = bind_udp_and_tcp().await;
                let address = udp.local_addr().unwrap();
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5));
                started.send(address).unwrap();
                server.block_until_done().await.unwrap();
            });
        });
        address.recv().expect("the DNS server starts")
    })
}

/// A UDP socket on a free port of 127.0.0.1 and a TCP listener on the same port.
async fn bind_udp_and_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no port of 127.0.0.1 was free for both UDP and TCP");
}

fn relays(list: &[(&str, u16)]) -> Vec<(String, u16)> {
    list.iter().map(|&(host, port)| (host.to_owned(), port)).collect()
}

#[test]
fn tcp_relays_come_in_priority_order_with_their_ports() {
    let server = [dns_server()];
    let found = smol::block_on(lookup_relay("example.test", false, Some(&server))).unwrap();
    assert_eq!(found, relays(&[("relay1.example.test", 2855), ("relay2.example.test", 2857)]));
}

#[test]
fn tls_relays_are_the_msrps_service() {
    let server = [dns_server()];
    let found = smol::block_on(lookup_relay("example.test.", true, Some(&server))).unwrap();
    assert_eq!(found, relays(&[("relay1.example.test", 2856)]));
}

#[test]
fn a_domain_without_srv_records_gives_an_empty_list() {
    let server = [dns_server()];
    // NXDOMAIN: the name does not exist.
    assert_eq!(smol::block_on(lookup_relay("nowhere.example.test", false, Some(&server))), Ok(Vec::new()));
    // NOERROR with no answer: the name exists, with an A record only.
    assert_eq!(smol::block_on(lookup_relay("plain.example.test", true, Some(&server))), Ok(Vec::new()));
}

#[test]
fn a_refusing_name_server_is_an_error_in_one_sentence() {
    let server = [dns_server()];
    // The server is authoritative for example.test only and refuses anything else.
    let error = smol::block_on(lookup_relay("example.org", true, Some(&server))).unwrap_err();
    assert_eq!(error.domain(), "example.org");
    assert_eq!(
        error.to_string(),
        "looking up the MSRP relay of example.org failed: the name server answered Query Refused"
    );
}

#[test]
fn an_answer_too_large_for_udp_comes_over_tcp() {
    let server = [dns_server()];
    let mut found = smol::block_on(lookup_relay("farm.example.test", false, Some(&server))).unwrap();
    found.sort_by_key(|&(_, port)| port);
    let expected: Vec<(String, u16)> =
        (0..FARM_SIZE).map(|relay| (format!("farm-relay-{relay}.example.test"), 3000 + relay)).collect();
    assert_eq!(found, expected);
}

#[test]
fn works_from_a_plain_thread_without_a_runtime() {
    let server = [dns_server()];
    let found =
        std::thread::spawn(move || futures::executor::block_on(lookup_relay("example.test", false, Some(&server))))
            .join()
            .unwrap()
            .unwrap();
    assert_eq!(found.first(), Some(&("relay1.example.test".to_owned(), 2855)));
}

#[test]
fn works_from_async_std() {
    let server = [dns_server()];
    let found = async_std::task::block_on(lookup_relay("example.test", true, Some(&server))).unwrap();
    assert_eq!(found, relays(&[("relay1.example.test", 2856)]));
}

#[test]
fn works_inside_a_single_threaded_tokio_runtime() {
    let server = [dns_server()];
    // The caller's only thread waits in the lookup: it must run somewhere else.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let found = runtime.block_on(lookup_relay("example.test", false, Some(&server))).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0], ("relay1.example.test".to_owned(), 2855));
}
