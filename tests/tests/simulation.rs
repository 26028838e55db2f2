//! The deterministic simulation of the whole stack (`msrp_tests::sim`) over many seeds.
//!
//! - `cargo test -p msrp-tests --test simulation` runs the CI seeds (0..300);
//! - `MSRP_SIM_SEEDS=<n>` runs seeds `0..n` (`MSRP_SIM_FIRST_SEED` moves the start);
//! - `MSRP_SIM_SEED=<n>` replays one seed, `MSRP_SIM_TRACE=1` prints its whole trace;
//! - `MSRP_SIM_THREADS=<n>` sets how many threads share the seeds.
//!
//! Seeds that found core bugs are kept below as `regression_seed_<n>`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use msrp_tests::sim::{RunSummary, SimFailure, run_seed, run_seed_with};

/// Seeds CI runs by default.
const CI_SEEDS: u64 = 300;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")))
}

fn passes(seed: u64) -> RunSummary {
    run_seed(seed).unwrap_or_else(|failure| panic!("{failure}"))
}

#[test]
fn seeds() {
    if let Some(seed) = env_u64("MSRP_SIM_SEED") {
        let echo = std::env::var_os("MSRP_SIM_TRACE").is_some();
        let summary = run_seed_with(seed, echo).unwrap_or_else(|failure| panic!("{failure}"));
        eprintln!("{summary:?}");
        return;
    }
    let first = env_u64("MSRP_SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("MSRP_SIM_SEEDS").unwrap_or(CI_SEEDS);
    let threads = env_u64("MSRP_SIM_THREADS")
        .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)), |n| n.max(1) as usize);
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let failures: Mutex<Vec<SimFailure>> = Mutex::new(Vec::new());
    let totals = Mutex::new((0u64, 0usize, 0usize, 0usize, 0u64));
    // Pairs whose every message had to be delivered; faults that cut a stream, and the
    // sessions that then found a frame cut off; strangers refused by the router.
    let coverage = Mutex::new((0u64, 0u64, 0u64, 0u64));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + count {
                        return;
                    }
                    match run_seed(seed) {
                        Ok(summary) => {
                            let mut totals = totals.lock().expect("no thread panics holding it");
                            totals.0 += summary.steps;
                            totals.1 += summary.messages;
                            totals.2 += summary.delivered;
                            totals.3 += summary.failed + summary.aborted;
                            totals.4 += summary.bytes_received;
                            let mut coverage = coverage.lock().expect("no thread panics holding it");
                            coverage.0 += summary.clean_pairs as u64;
                            coverage.1 += summary.truncations;
                            coverage.2 += summary.cut_frames;
                            coverage.3 += summary.strangers;
                        }
                        Err(failure) => failures.lock().expect("no thread panics holding it").push(failure),
                    }
                }
            });
        }
    });
    let (steps, messages, delivered, not_delivered, bytes) = *totals.lock().expect("threads are done");
    let (clean, truncations, cut_frames, strangers) = *coverage.lock().expect("threads are done");
    eprintln!(
        "simulation: seeds {first}..{} in {:.1?} on {threads} thread(s): {steps} steps, {messages} messages \
         ({delivered} delivered, {not_delivered} failed or aborted), {bytes} B received; {clean} pair(s) had to \
         deliver everything; {truncations} reset(s) or half-close(s), {cut_frames} frame(s) cut off; \
         {strangers} stranger(s) refused",
        first + count,
        started.elapsed()
    );
    let mut failures = failures.into_inner().expect("threads are done");
    failures.sort_by_key(|failure| failure.seed);
    if let Some(first_failure) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|failure| failure.seed).collect();
        panic!("{} seed(s) failed: {seeds:?}\n{first_failure}", failures.len());
    }
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    for seed in [0, 7, 1234, 99_999] {
        let first = passes(seed);
        let again = passes(seed);
        assert_eq!(first, again, "seed {seed} ran differently the second time");
    }
    assert_ne!(passes(0).trace_hash, passes(1).trace_hash, "different seeds gave the same trace");
}

/// A message streamed without a total, reported piece by piece, was said `ReportMissing`
/// although every byte was reported (core fix: the sender records the length when it cuts
/// the last chunk).
#[test]
fn regression_seed_13() {
    passes(13);
}

/// A `Failure-Report: no` message whose chunks were transmitted but never written (the
/// peer stopped reading) came out `Delivered` when the application closed the session
/// (core fix: an orderly end answers only written requests by the timeout rule).
#[test]
fn regression_seed_319() {
    passes(319);
}
