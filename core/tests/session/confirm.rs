//! Issue 12 §3 "success REPORT after the bytes are safe": with
//! `SessionConfig::confirm_messages`, a message's success REPORT waits for the
//! application's `Session::confirm_message`, and a refusal becomes a failure REPORT
//! (RFC 4975 §7.1.2, §7.3: the chunks were answered 200 already).

use super::*;

/// Alice sends an 8000-byte message in three chunks asking for a success REPORT (and
/// `failure_report`, when given), to a Bob that confirms messages himself. Returns the
/// pair and the message's Message-ID as Bob saw it.
fn sent_to_a_confirming_bob(failure_report: Option<&str>) -> (Pair, OutgoingId, String) {
    let (mut alice, mut bob) = configs();
    alice.max_chunk_size = 3000;
    bob.confirm_messages = true;
    let mut pair = Pair::bound_with(alice, bob);
    let mut wanted = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    if let Some(value) = failure_report {
        wanted.headers.set(HeaderName::FailureReport, value);
    }
    let id = pair.alice.session.send_message(pair.now, wanted, pattern(8000)).unwrap();
    pair.run();
    let events = pair.bob.take_events();
    let message_id = incoming(&events)[0].message_id().unwrap().to_owned();
    assert_eq!(incoming_body(&events).len(), 8000);
    (pair, id, message_id)
}

fn reports(chunks: &[Chunk]) -> Vec<&Chunk> {
    chunks.iter().filter(|chunk| chunk.method() == Some(&Method::Report)).collect()
}

#[test]
fn issue12_the_success_report_waits_for_the_applications_confirmation() {
    // R4975-7.1.2-1, R4975-7.1.3-1: the REPORT says the message was received, and goes
    // out only once the application says so; the 200s go out as the chunks arrive.
    let (mut pair, id, message_id) = sent_to_a_confirming_bob(None);
    assert_eq!(responses(&pair.bob.sent_chunks()), vec![200, 200, 200, 200], "binding and three chunks");
    assert!(reports(&pair.bob.sent_chunks()).is_empty(), "no REPORT before the confirmation");
    assert!(done(&pair.alice.take_events()).contains(&(id, MessageOutcome::Delivered)));
    // However long the application takes (the sender's patience is its own affair).
    pair.advance(Duration::from_secs(20));
    assert!(reports(&pair.bob.sent_chunks()).is_empty());
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Ok(())), Ok(true));
    pair.run();
    let sent = pair.bob.sent_chunks();
    let sent = reports(&sent);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].byte_range(), Some(ByteRange::new(1, Some(8000), Some(8000))));
    assert_eq!(sent[0].status().unwrap().code, 200);
    let events = pair.alice.take_events();
    assert!(events.iter().any(|e| matches!(e, Event::Report { message: Some(m), .. } if *m == id)), "{events:?}");
    // Confirmed once: a second word is about nothing held.
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Ok(())), Ok(false));
}

#[test]
fn issue12_a_refused_message_gets_a_failure_report_with_its_status() {
    // R4975-7.1.2 (Failure-Report yes), R4975-7.3: the chunks got 200, so the refusal
    // is a REPORT with the application's status over the whole message.
    let (mut pair, _, message_id) = sent_to_a_confirming_bob(None);
    let refusal = MsrpError::new(413, "Message too large to keep");
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Err(refusal)), Ok(true));
    pair.run();
    let sent = pair.bob.sent_chunks();
    let sent = reports(&sent);
    assert_eq!(sent.len(), 1, "only the failure REPORT, no success REPORT");
    let status = sent[0].status().unwrap();
    assert_eq!((status.code, status.comment.as_deref()), (413, Some("Message too large to keep")));
    assert_eq!(sent[0].byte_range(), Some(ByteRange::new(1, Some(8000), Some(8000))));
    let events = pair.alice.take_events();
    let report = events.iter().find_map(|e| match e {
        Event::Report { report, .. } => Some(report),
        _ => None,
    });
    assert_eq!(report.and_then(Chunk::status).map(|status| status.code), Some(413));
}

#[test]
fn issue12_a_refusal_follows_the_failure_report_header() {
    // R4975-7.1.2: `partial` still wants failure REPORTs; `no` wants none at all.
    let (mut pair, _, message_id) = sent_to_a_confirming_bob(Some("partial"));
    let refusal = MsrpError::new(413, "Too large");
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Err(refusal.clone())), Ok(true));
    pair.run();
    assert_eq!(reports(&pair.bob.sent_chunks()).len(), 1);
    let (mut pair, _, message_id) = sent_to_a_confirming_bob(Some("no"));
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Err(refusal)), Ok(false));
    pair.run();
    assert!(reports(&pair.bob.sent_chunks()).is_empty());
}

#[test]
fn issue12_without_the_mode_the_report_goes_at_once_and_nothing_is_held() {
    // R4975-7.1.3-1: off by default, the REPORT follows the last chunk's 200.
    let mut pair = Pair::bound();
    let wanted = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    pair.alice.session.send_message(pair.now, wanted, pattern(100)).unwrap();
    pair.run();
    assert_eq!(reports(&pair.bob.sent_chunks()).len(), 1);
    let message_id = incoming(&pair.bob.take_events())[0].message_id().unwrap().to_owned();
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Ok(())), Ok(false));
}

#[test]
fn issue12_unconfirmed_messages_stay_bounded_and_aborted_ones_are_forgotten() {
    // Past `max_tracked_reports` messages waiting, the oldest is given up (no REPORT for
    // it: never one that says more than the application did); an aborted message owes
    // nothing.
    let (alice, mut bob) = configs();
    bob.confirm_messages = true;
    bob.max_tracked_reports = 2;
    let mut pair = Pair::bound_with(alice, bob);
    for _ in 0..3 {
        let wanted = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
        pair.alice.session.send_message(pair.now, wanted, pattern(10)).unwrap();
    }
    pair.run();
    let events = pair.bob.take_events();
    let ids: Vec<String> = incoming(&events).iter().map(|chunk| chunk.message_id().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(pair.bob.session.confirm_message(pair.now, &ids[0], Ok(())), Ok(false), "given up");
    assert_eq!(pair.bob.session.confirm_message(pair.now, &ids[1], Ok(())), Ok(true));
    assert_eq!(pair.bob.session.confirm_message(pair.now, &ids[2], Ok(())), Ok(true));
    pair.run();
    assert_eq!(reports(&pair.bob.sent_chunks()).len(), 2);

    let (mut alice, mut bob) = configs();
    alice.max_chunk_size = 100;
    bob.confirm_messages = true;
    let mut pair = Pair::bound_with(alice, bob);
    let mut streamed = with_header(options("text/plain"), HeaderName::SuccessReport, "yes");
    streamed.total = Some(1000);
    let id = pair.alice.session.start_message(pair.now, streamed).unwrap();
    pair.alice.session.write_message(pair.now, id, pattern(300)).unwrap();
    pair.run();
    let message_id = incoming(&pair.bob.take_events())[0].message_id().unwrap().to_owned();
    pair.alice.session.abort_message(pair.now, id).unwrap();
    pair.run();
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Ok(())), Ok(false));
    // Once closed, there is no one to tell.
    pair.bob.session.close(pair.now);
    assert_eq!(pair.bob.session.confirm_message(pair.now, &message_id, Ok(())), Err(SendError::Closed));
}
