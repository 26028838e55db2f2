//! The deterministic simulation of the whole stack (`msrp_tests::sim`) over many seeds.
//!
//! - `cargo test -p msrp-tests --test simulation` runs the CI seeds (0..300);
//! - `MSRP_SIM_SEEDS=<n>` runs seeds `0..n` (`MSRP_SIM_FIRST_SEED` moves the start);
//! - `MSRP_SIM_SEED=<n>` replays one seed, `MSRP_SIM_TRACE=1` prints its whole trace;
//! - `MSRP_SIM_THREADS=<n>` sets how many threads share the seeds.
//!
//! Seeds that found core bugs are kept below as `regression_seed_<n>`, each with the trace
//! hash of its run under today's harness (a changed hash fails the test: the harness
//! drifted, so check the seed still plays its scenario and update the hash).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use msrp_core::session::MessageOutcome;
use msrp_tests::sim::invariants::SentMessage;
use msrp_tests::sim::{RunSummary, SimFailure, run_seed, run_seed_messages, run_seed_with};

/// Seeds CI runs by default.
const CI_SEEDS: u64 = 300;

/// Trace hashes of the regression seeds with today's harness.
const HASH_3: u64 = 0xe2f3_c442_29bb_fc36;
const HASH_13: u64 = 0x7cb4_f54a_2cee_5edd;
const HASH_89: u64 = 0x1585_61f6_fe57_3b89;
const HASH_319: u64 = 0xe3f6_26f2_daff_f7f0;
const HASH_18956: u64 = 0xa6f9_90b0_5225_6820;

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
    for seed in [7, 1234, 99_999] {
        let first = passes(seed);
        let again = passes(seed);
        assert_eq!(first, again, "seed {seed} ran differently the second time");
    }
    assert_ne!(passes(0).trace_hash, passes(1).trace_hash, "different seeds gave the same trace");
}

#[test]
fn a_sample_of_the_ci_seeds_replays_to_the_same_summaries() {
    let sample: Vec<u64> = (0..CI_SEEDS).step_by(25).collect();
    let first: Vec<RunSummary> = sample.iter().map(|&seed| passes(seed)).collect();
    let again: Vec<RunSummary> = sample.iter().map(|&seed| passes(seed)).collect();
    for (first, again) in first.iter().zip(&again) {
        assert_eq!(first, again, "seed {} ran differently the second time", first.seed);
    }
}

/// Runs a seed kept for a core bug: it must pass, `symptom` must not show in its
/// messages, and its trace must hash to `recorded`. A different hash means the harness
/// changed what the seed does: check (with `MSRP_SIM_SEED=<n> MSRP_SIM_TRACE=1`) that it
/// still plays the scenario of its bug, or find a seed that does, and update the hash.
fn regression(seed: u64, recorded: u64, symptom: impl Fn(&SentMessage) -> bool) {
    let (summary, messages) = run_seed_messages(seed).unwrap_or_else(|failure| panic!("{failure}"));
    if let Some(message) = messages.iter().find(|message| symptom(message)) {
        panic!("seed {seed}: the bug is back: {message:?}");
    }
    eprintln!("seed {seed}: trace hash {:#018x}", summary.trace_hash);
    assert_eq!(
        summary.trace_hash, recorded,
        "seed {seed}: the harness changed this run (trace hash {:#018x}, recorded {recorded:#018x}); \
         check that it still shows its scenario, then update the hash",
        summary.trace_hash
    );
}

fn failed_with(message: &SentMessage, code: u16) -> bool {
    matches!(&message.outcome, Some(MessageOutcome::Failed(error)) if error.code == code)
}

/// A message streamed without a total, reported piece by piece, was said `ReportMissing`
/// although every byte was reported (core fix: the sender records the length when it cuts
/// the last chunk). Kept from an earlier harness: its hash records today's run.
#[test]
fn regression_seed_13() {
    regression(13, HASH_13, |m| m.report_missing && m.report_seen && m.reported.covers(0, m.body.len() as u64));
}

/// A `Failure-Report: no` message whose chunks were transmitted but never written (the
/// peer stopped reading) came out `Delivered` when the application closed the session
/// (core fix: an orderly end answers only written requests by the timeout rule). Kept from
/// an earlier harness: its hash records today's run.
#[test]
fn regression_seed_319() {
    regression(319, HASH_319, |m| {
        m.outcome == Some(MessageOutcome::Delivered) && !m.failure_report.answered() && m.last_chunk_end.is_none()
    });
}

/// A streamed message with a known total completed before its bodiless `$` chunk, which
/// reopened it in the receiver's reassembler (`max_open_messages` 1): `c1x4` got 413 "Too
/// many messages in progress" (core fix: such a chunk opens nothing).
#[test]
fn regression_seed_3() {
    regression(3, HASH_3, |m| failed_with(m, 413) && m.overlap == 0);
}

/// An empty message asking for a success REPORT was forgotten on `Delivered`, so its
/// REPORT named no message (core fix: it awaits its REPORT like any other).
#[test]
fn regression_seed_89() {
    regression(89, HASH_89, |m| m.body.is_empty() && m.success_report && !m.report_seen && !m.report_missing);
}

/// A message refused with 413 ("Too many messages in progress", one slot) still had
/// chunks on the way; they reopened it in the receiver's reassembler, where it never
/// completed, so `c2x4` got 413 too (core fix: chunks of a refused message are refused).
#[test]
fn regression_seed_18956() {
    regression(18956, HASH_18956, |m| failed_with(m, 413) && m.overlap == 0);
}
