//! The relay client in the deterministic simulation (`msrp_tests::sim::relay`): endpoints
//! log in to a scripted relay over simulated connections, then run their sessions through
//! it, over many seeds, with every invariant of the simulation checked on every step.
//!
//! - `cargo test -p msrp-tests --test relay_simulation` runs each scenario's seeds;
//! - `MSRP_SIM_SEEDS=<n>` runs `n` seeds per scenario (`MSRP_SIM_FIRST_SEED` moves the start);
//! - `MSRP_SIM_SEED=<n>` runs only seed `n` (add `MSRP_SIM_TRACE=1` for its trace, and
//!   name the scenario's test to replay just that one).

use std::time::Duration;

use msrp_core::relay::{AUTH_TIMEOUT, RelayCredentials, RelayError, RelayEvent};
use msrp_core::session::{MessageOutcome, SessionError};
use msrp_tests::relay::{DigestAuth, RelayScript};
use msrp_tests::sim::relay::{RelayRun, RelayWorld, run_relay_seed};

/// Seeds each scenario runs by default.
const SEEDS: u64 = 40;

const REALM: &str = "10.0.9.1";
const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")))
}

/// Runs the world `world` over the scenario's seeds; panics with the first failure.
fn runs(world: &RelayWorld) -> Vec<RelayRun> {
    let seeds = if let Some(seed) = env_u64("MSRP_SIM_SEED") {
        seed..seed + 1
    } else {
        let first = env_u64("MSRP_SIM_FIRST_SEED").unwrap_or(0);
        first..first + env_u64("MSRP_SIM_SEEDS").unwrap_or(SEEDS)
    };
    let echo = std::env::var_os("MSRP_SIM_TRACE").is_some();
    seeds.map(|seed| run_relay_seed(seed, world, echo).unwrap_or_else(|failure| panic!("{failure}"))).collect()
}

/// A relay with Digest authentication, and clients that know the password.
fn digest_world(script: RelayScript) -> RelayWorld {
    let auth = DigestAuth::any_user(REALM, PASSWORD);
    let credentials = RelayCredentials { username: USER.into(), password: PASSWORD.into() };
    RelayWorld { credentials: Some(credentials), ..RelayWorld::new(RelayScript { auth: Some(auth), ..script }) }
}

fn endpoints(run: &RelayRun) -> u64 {
    run.closed.len() as u64
}

/// Every login of `run` was authorized.
fn all_authorized(run: &RelayRun) {
    assert_eq!(run.logins.len() as u64, endpoints(run), "seed {}: {:?}", run.summary.seed, run.logins);
    for login in &run.logins {
        assert!(login.outcome.is_ok(), "seed {}: {login:?}", run.summary.seed);
    }
}

/// Messages of `run` from a client (`c…`) or a server side (`s…`) that arrived whole.
fn arrived(run: &RelayRun, from: char, how: &str) -> usize {
    run.messages
        .iter()
        .filter(|m| run.closed[m.sender].0.starts_with(from) && m.how == how)
        .filter(|m| m.outcome == Some(MessageOutcome::Delivered) && m.receiver_saw_end)
        .count()
}

fn refreshes(run: &RelayRun) -> Vec<(&str, Option<Duration>)> {
    run.relay_events
        .iter()
        .filter_map(|(peer, event)| match event {
            RelayEvent::Refreshed { expires, path_changed, .. } => {
                assert!(!path_changed, "seed {}: a refresh of a live grant changed the path", run.summary.seed);
                Some((peer.as_str(), *expires))
            }
            _ => None,
        })
        .collect()
}

/// Scenario 1: one relay with Digest auth (401, then 200 for each endpoint); messages and
/// files both ways; in some seeds reads of 1 to 16 bytes, always with latency.
#[test]
fn endpoints_talk_through_a_digest_relay() {
    let runs = runs(&digest_world(RelayScript::default()));
    for run in &runs {
        all_authorized(run);
        let n = endpoints(run);
        assert_eq!((run.stats.challenges, run.stats.authorized), (n, n), "seed {}", run.summary.seed);
        if run.summary.messages > 0 {
            assert!(run.stats.forwarded_requests > 0, "seed {}: nothing went through the relay", run.summary.seed);
        }
    }
    if env_u64("MSRP_SIM_SEED").is_some() {
        return;
    }
    for from in ['c', 's'] {
        for how in ["send_message", "send_file"] {
            let count: usize = runs.iter().map(|run| arrived(run, from, how)).sum();
            assert!(count > 0, "no {how} from a {from} side arrived whole in any seed");
        }
    }
    let bytes: u64 = runs.iter().map(|run| run.summary.bytes_received).sum();
    let clean: usize = runs.iter().map(|run| run.summary.clean_pairs).sum();
    eprintln!("{} seeds: {bytes} B received, {clean} pair(s) had to deliver everything", runs.len());
    assert!(clean > 0, "no seed had a pair where every message had to be delivered");
}

/// Scenario 2a: Kamailio's 423 to any Expires with an Authorization. Clients that ask for
/// an Expires get 401 (twice: Kamailio wants `uri=`), then 423, then 200 without Expires.
#[test]
fn kamailio_423_to_expires_with_authorization() {
    let world = RelayWorld { expires: Some(600), ..digest_world(RelayScript::kamailio_like(None)) };
    for run in runs(&world) {
        all_authorized(&run);
        let n = endpoints(&run);
        assert_eq!(run.stats.interval_refused, n, "seed {}: one 423 per login", run.summary.seed);
        assert_eq!(run.stats.authorized, n, "seed {}", run.summary.seed);
        assert_eq!(run.stats.too_large, 0, "seed {}: a frame over Kamailio's limit", run.summary.seed);
    }
}

/// Scenario 2b: a relay granting 120 to 300 s. Asking 30 s gets 423 with Min-Expires and
/// the grant is 120 s; asking 7200 s gets 423 with Max-Expires and the grant is 300 s. The
/// refreshes ask for the bounded value (no second 423).
#[test]
fn expires_outside_the_relays_bounds_is_moved_into_them() {
    let script = RelayScript { min_expires: 120, max_expires: 300, ..RelayScript::default() };
    for (asked, granted) in [(30, 120), (7_200, 300)] {
        let lifetime = Duration::from_secs(granted * 4 / 5);
        let world = RelayWorld {
            expires: Some(asked),
            lifetime: Some((lifetime, lifetime + Duration::from_secs(30))),
            ..digest_world(script.clone())
        };
        let mut total = 0;
        for run in runs(&world) {
            all_authorized(&run);
            let seed = run.summary.seed;
            assert_eq!(run.stats.interval_refused, endpoints(&run), "seed {seed}: one 423 per login, none later");
            let refreshed = refreshes(&run);
            for (peer, expires) in &refreshed {
                assert_eq!(*expires, Some(Duration::from_secs(granted)), "seed {seed}: {peer}");
            }
            // A session its application ended lived past the refresh at 3/4 of the grant.
            for (name, closed) in &run.closed {
                let refreshed = refreshed.iter().any(|(peer, _)| peer == name);
                assert!(refreshed || !matches!(closed, Some(None)), "seed {seed}: {name} never refreshed");
            }
            total += refreshed.len();
        }
        assert!(total > 0, "no {granted} s grant was refreshed in any seed");
    }
}

/// Scenario 3: 60 s grants and sessions of 200 to 300 s with traffic spread over them:
/// each client refreshes before its grant runs out (the relay counts the refreshes), and
/// the sessions keep working.
#[test]
fn short_grants_are_refreshed_while_the_session_runs() {
    let world = RelayWorld {
        lifetime: Some((Duration::from_secs(200), Duration::from_secs(300))),
        ..digest_world(RelayScript { default_expires: 60, ..RelayScript::default() })
    };
    let runs = runs(&world);
    for run in &runs {
        all_authorized(run);
        let refreshed = refreshes(run);
        // The relay counts every refresh it granted; a session may close before its
        // answer arrives (at most one per endpoint).
        let heard = refreshed.len() as u64;
        assert!(
            (heard..=heard + endpoints(run)).contains(&run.stats.refreshed),
            "seed {}: the relay granted {} refreshes, the sessions heard of {heard}",
            run.summary.seed,
            run.stats.refreshed
        );
        assert_eq!(run.stats.authorized, endpoints(run), "seed {}: a grant was lost", run.summary.seed);
        // A refresh at 45 s of each grant; the shortest session lasts 200 s (unless the
        // peer's ended it first: its close ends the other's session through 481).
        for (name, closed) in &run.closed {
            let count = refreshed.iter().filter(|(peer, _)| peer == name).count();
            if matches!(closed, Some(None)) {
                assert!(count >= 4, "seed {}: {name} refreshed {count} time(s) in 200 s", run.summary.seed);
            }
        }
    }
    let delivered: usize = runs.iter().map(|run| run.summary.delivered).sum();
    assert!(delivered > 0, "no message was delivered across the refreshes");
}

/// Scenario 4: the relay hangs up on one client mid-session. The dropped session ends with
/// `ConnectionClosed`; the other learns from its keepalive (481 from the relay) or a 481 to
/// its own request; every message has an outcome and none is lost silently (the oracle's
/// hop-by-hop check: Delivered by the relay's 200 means the receiver got it, unless its
/// session had ended).
#[test]
fn a_relay_that_drops_a_client_mid_session() {
    let world = RelayWorld {
        keepalive: Some(Duration::from_secs(5)),
        lifetime: Some((Duration::from_secs(40), Duration::from_secs(60))),
        drop_after: Some((Duration::from_millis(500), Duration::from_secs(20))),
        steady_links: true,
        ..digest_world(RelayScript::default())
    };
    let mut failed = 0;
    for run in runs(&world) {
        all_authorized(&run);
        let seed = run.summary.seed;
        let dropped = run.dropped.as_deref().unwrap_or_else(|| panic!("seed {seed}: the relay dropped nobody"));
        assert_eq!(run.stats.closed_by_relay, 1, "seed {seed}");
        let closed =
            |name: &str| run.closed.iter().find(|(peer, _)| peer == name).and_then(|(_, closed)| closed.clone());
        let other =
            if dropped.starts_with('c') { dropped.replacen('c', "s", 1) } else { dropped.replacen('s', "c", 1) };
        assert_eq!(closed(dropped), Some(Some(SessionError::ConnectionClosed)), "seed {seed}: {dropped}");
        match closed(&other) {
            Some(Some(SessionError::KeepaliveFailed(error) | SessionError::Failed(error))) => {
                assert_eq!(error.code, 481, "seed {seed}: {other}");
            }
            unexpected => panic!("seed {seed}: {other} ended with {unexpected:?}, not by the relay's 481"),
        }
        failed += run.summary.failed;
    }
    eprintln!("{failed} message(s) failed across the drops");
}

/// Scenario 5a: a relay that never answers AUTH: each login fails with `TimedOut` after 30 s
/// of virtual time, and no session is built.
#[test]
fn a_relay_that_ignores_auth_times_the_login_out() {
    let world = digest_world(RelayScript { ignore_auth: true, ..RelayScript::default() });
    for run in runs(&world) {
        let seed = run.summary.seed;
        assert_eq!(run.logins.len() as u64, endpoints(&run), "seed {seed}");
        for login in &run.logins {
            let Err(RelayError::TimedOut { after, .. }) = &login.outcome else {
                panic!("seed {seed}: {login:?}");
            };
            assert_eq!(*after, AUTH_TIMEOUT, "seed {seed}");
            // The AUTH goes as soon as the connection is up (at most 30 ms).
            assert!(
                login.at >= AUTH_TIMEOUT && login.at <= AUTH_TIMEOUT + Duration::from_millis(30),
                "seed {seed}: {login:?}"
            );
        }
        assert!(run.closed.iter().all(|(_, closed)| closed.is_none()), "seed {seed}: a session was built");
        assert_eq!(run.summary.messages, 0, "seed {seed}");
    }
}

/// Scenario 5b: a relay answering AUTH with 403: `WrongCredentials`.
#[test]
fn a_relay_that_refuses_auth_with_403_is_wrong_credentials() {
    let world = digest_world(RelayScript { refuse_auth_with: Some(403), ..RelayScript::default() });
    for run in runs(&world) {
        let seed = run.summary.seed;
        assert_eq!(run.logins.len() as u64, endpoints(&run), "seed {seed}");
        for login in &run.logins {
            assert!(matches!(login.outcome, Err(RelayError::WrongCredentials { .. })), "seed {seed}: {login:?}");
        }
        assert!(run.closed.iter().all(|(_, closed)| closed.is_none()), "seed {seed}: a session was built");
    }
}

/// Scenario 5c: a relay that hangs up right after its 200: the logins succeed, but the
/// sessions built on them never bind; both end with an error, and their messages fail.
#[test]
fn a_relay_that_drops_after_auth_fails_the_binding() {
    let world = RelayWorld {
        lifetime: Some((Duration::from_secs(5), Duration::from_secs(10))),
        ..digest_world(RelayScript { drop_after_auth: true, ..RelayScript::default() })
    };
    for run in runs(&world) {
        let seed = run.summary.seed;
        all_authorized(&run);
        assert!(run.bound.is_empty(), "seed {seed}: {:?} bound", run.bound);
        for (name, closed) in &run.closed {
            assert!(matches!(closed, Some(Some(_))), "seed {seed}: {name} ended with {closed:?}");
        }
        assert_eq!(run.summary.delivered, 0, "seed {seed}");
    }
}

/// A relayed seed replays to the same trace (the relay's maps never decide an order).
#[test]
fn a_relayed_seed_replays_to_the_same_trace() {
    let world = RelayWorld { expires: Some(600), ..digest_world(RelayScript::kamailio_like(None)) };
    for seed in [3, 17] {
        let first = run_relay_seed(seed, &world, false).unwrap_or_else(|failure| panic!("{failure}"));
        let again = run_relay_seed(seed, &world, false).unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(first.summary, again.summary, "seed {seed} ran differently the second time");
        assert_eq!(first.stats, again.stats, "seed {seed}");
    }
}
