//! Finding an MSRP relay by its domain (RFC 4976 §8): DNS SRV records, ordered as RFC 2782
//! says.
//!
//! hickory-resolver needs tokio, and the callers run on any runtime or on none, so the
//! queries run on a private thread with a small tokio runtime of its own; the caller only
//! awaits a channel. No runtime thread of the caller ever blocks on the network.

use std::net::SocketAddr;

use rand_core::TryRngCore;

/// The SRV lookup of a relay's domain failed: the name servers could not be reached or
/// answered with an error. A domain without such SRV records is not an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("looking up the MSRP relay of {domain} failed: {reason}")]
pub struct DnsError {
    domain: String,
    reason: String,
}

impl DnsError {
    /// The domain whose relay was looked up.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// Where a relay named by a domain is (RFC 4976 §8): the SRV records of
/// `_msrps._tcp.<domain>` (TLS) or `_msrp._tcp.<domain>` (TCP), each target (a host name
/// without the final dot) with its port, ordered by priority and then by the weighted
/// random choice of RFC 2782.
///
/// The list is empty when the domain or its SRV records do not exist (or only say "no
/// service here" with the target `.`); the caller then falls back to the domain's
/// A/AAAA records with the default port 2855. `nameservers: None` asks the servers of
/// the system configuration (`/etc/resolv.conf`), `Some` asks those, over UDP and TCP.
///
/// Works from any runtime, or from none through `futures::executor::block_on`.
pub async fn lookup_relay(
    domain: &str,
    use_tls: bool,
    nameservers: Option<&[SocketAddr]>,
) -> Result<Vec<(String, u16)>, DnsError> {
    let service = if use_tls { "_msrps" } else { "_msrp" };
    // The final dot makes the name absolute: no search domains are tried.
    let name = format!("{service}._tcp.{}.", domain.trim_end_matches('.'));
    let records = srv_records(name, nameservers.map(<[SocketAddr]>::to_vec))
        .await
        .map_err(|reason| DnsError { domain: domain.to_owned(), reason })?;
    // Without randomness from the system, a fixed choice is still a valid order.
    let seed = rand_core::OsRng.try_next_u64().unwrap_or_default();
    Ok(order_targets(records, seed))
}

/// One SRV record, its target without the final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvRecord {
    priority: u16,
    weight: u16,
    target: String,
    port: u16,
}

/// RFC 2782's order: lowest priority first; within one priority, records are drawn one by
/// one, each with a chance proportional to its weight (weight 0 almost never first),
/// from a random stream started at `seed`.
fn order_targets(mut records: Vec<SrvRecord>, seed: u64) -> Vec<(String, u16)> {
    let mut random = SplitMix64(seed);
    // RFC 2782 puts the weight-0 records first, so that a draw of 0 can pick them.
    records.sort_by_key(|record| (record.priority, record.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    for same_priority in records.chunk_by(|a, b| a.priority == b.priority) {
        let mut left: Vec<&SrvRecord> = same_priority.iter().collect();
        while !left.is_empty() {
            let total: u64 = left.iter().map(|record| u64::from(record.weight)).sum();
            let draw = random.next_u64() % (total + 1);
            let mut running_sum = 0;
            let index = left
                .iter()
                .position(|record| {
                    running_sum += u64::from(record.weight);
                    running_sum >= draw
                })
                .expect("the running sum reaches the total, which is at least the draw");
            let chosen = left.remove(index);
            ordered.push((chosen.target.clone(), chosen.port));
        }
    }
    ordered
}

/// A small random stream from one seed (SplitMix64): enough to shuffle a few records.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

use resolve::srv_records;

mod resolve {
    use std::net::SocketAddr;
    use std::sync::{Mutex, PoisonError, mpsc};

    use futures::channel::oneshot;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::xfer::Protocol;
    use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
    use hickory_resolver::{ResolveError, Resolver, TokioResolver};
    use tokio::runtime::Handle;

    use super::SrvRecord;
    use crate::io_phrase;

    /// The SRV records of `name` (an absolute name), asked on the DNS thread.
    pub(super) async fn srv_records(
        name: String,
        nameservers: Option<Vec<SocketAddr>>,
    ) -> Result<Vec<SrvRecord>, String> {
        let runtime =
            dns_runtime().map_err(|error| format!("the DNS thread could not start: {}", io_phrase(&error)))?;
        let (answer, answered) = oneshot::channel();
        runtime.spawn(async move {
            // The caller may have given up; nobody is left to tell then.
            let _ = answer.send(query(&name, nameservers).await);
        });
        answered.await.map_err(|_| "the DNS thread stopped".to_owned())?
    }

    /// The handle of the DNS thread's runtime, the thread started on first use.
    fn dns_runtime() -> std::io::Result<Handle> {
        static RUNTIME: Mutex<Option<Handle>> = Mutex::new(None);
        let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = &*runtime {
            return Ok(handle.clone());
        }
        // The runtime is built on its own thread: one built here could not be dropped
        // here if the caller is inside a tokio runtime.
        let (report, reported) = mpsc::channel();
        std::thread::Builder::new().name("msrp-dns".to_owned()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(tokio_runtime) => {
                    let _ = report.send(Ok(tokio_runtime.handle().clone()));
                    // Runs the spawned lookups for as long as the process lives.
                    tokio_runtime.block_on(std::future::pending::<()>());
                }
                Err(error) => {
                    let _ = report.send(Err(error));
                }
            }
        })?;
        // Waits only for the runtime's construction, once per process.
        let handle = reported.recv().map_err(|_| std::io::Error::other("it ended at once"))??;
        *runtime = Some(handle.clone());
        Ok(handle)
    }

    async fn query(name: &str, nameservers: Option<Vec<SocketAddr>>) -> Result<Vec<SrvRecord>, String> {
        let builder = match nameservers {
            None => TokioResolver::builder_tokio().map_err(|error| reason(&error))?,
            Some(servers) => {
                let servers: Vec<NameServerConfig> = servers
                    .into_iter()
                    .flat_map(|server| {
                        [NameServerConfig::new(server, Protocol::Udp), NameServerConfig::new(server, Protocol::Tcp)]
                    })
                    .collect();
                let config = ResolverConfig::from_parts(None, Vec::new(), servers);
                let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
                // EDNS0: a large relay farm's answer fits one datagram, or comes back
                // truncated and is asked again over TCP; without it a server may send
                // more than 512 bytes, which are dropped.
                builder.options_mut().edns0 = true;
                builder
            }
        };
        match builder.build().srv_lookup(name).await {
            Ok(found) => Ok(found
                .iter()
                // Target `.`: "decidedly not available" here (RFC 2782).
                .filter(|srv| !srv.target().is_root())
                .map(|srv| SrvRecord {
                    priority: srv.priority(),
                    weight: srv.weight(),
                    target: srv.target().to_ascii().trim_end_matches('.').to_owned(),
                    port: srv.port(),
                })
                .collect()),
            Err(error) if is_no_such_record(&error) => Ok(Vec::new()),
            Err(error) => Err(reason(&error)),
        }
    }

    /// NXDOMAIN, or an empty answer: the domain has no such SRV records.
    fn is_no_such_record(error: &ResolveError) -> bool {
        error.proto().is_some_and(|error| {
            matches!(
                error.kind(),
                ProtoErrorKind::NoRecordsFound { response_code: ResponseCode::NoError | ResponseCode::NXDomain, .. }
            )
        })
    }

    /// The resolver's error as a phrase.
    fn reason(error: &ResolveError) -> String {
        match error.proto().map(ProtoError::kind) {
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
                format!("the name server answered {response_code}")
            }
            Some(ProtoErrorKind::Io(error)) => io_phrase(error),
            Some(kind) => kind.to_string(),
            None => error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SrvRecord, order_targets};

    fn record(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord { priority, weight, target: target.to_owned(), port: 2855 }
    }

    fn targets(ordered: &[(String, u16)]) -> Vec<&str> {
        ordered.iter().map(|(target, _)| target.as_str()).collect()
    }

    #[test]
    fn lower_priority_comes_first_whatever_the_weights() {
        let records = vec![record(20, 100, "c"), record(10, 0, "a"), record(30, 5, "d"), record(10, 0, "b")];
        for seed in 0..100 {
            let ordered = order_targets(records.clone(), seed);
            let names = targets(&ordered);
            assert_eq!(&names[2..], ["c", "d"], "seed {seed}");
            assert!(names[..2].contains(&"a") && names[..2].contains(&"b"), "seed {seed}");
        }
    }

    #[test]
    fn weights_share_the_first_place_in_proportion() {
        let records = vec![record(0, 1, "light"), record(0, 3, "heavy"), record(0, 0, "zero")];
        let mut first = std::collections::HashMap::new();
        for seed in 0..4000 {
            let ordered = order_targets(records.clone(), seed);
            assert_eq!(ordered.len(), 3);
            *first.entry(ordered[0].0.clone()).or_insert(0) += 1;
        }
        // Draws are uniform in 0..=4: zero wins on 0, light on 1, heavy on 2..=4.
        let share = |name: &str| f64::from(first.get(name).copied().unwrap_or(0)) / 4000.0;
        assert!((share("zero") - 0.2).abs() < 0.03, "{first:?}");
        assert!((share("light") - 0.2).abs() < 0.03, "{first:?}");
        assert!((share("heavy") - 0.6).abs() < 0.03, "{first:?}");
    }

    #[test]
    fn every_record_is_kept_with_its_port() {
        let mut records = vec![record(1, 10, "a"), record(1, 10, "b")];
        records[1].port = 2856;
        let mut ordered = order_targets(records, 7);
        ordered.sort();
        assert_eq!(ordered, [("a".to_owned(), 2855), ("b".to_owned(), 2856)]);
    }
}
