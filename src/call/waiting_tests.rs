//! Waiting in a queue on a virtual clock: greeting, announcements every N
//! seconds, the periodic message, and the callback offer by `offer-after`
//! and by `when-wait-over`.

use super::*;
use crate::config::Config;

fn queue(yaml: &str) -> QueueConfig {
    let config = Config::parse(&format!(
        "trunks:
  - name: carrier
    allow: []
    outbound: {{ proxy: 'sip:127.0.0.1:5090', caller-id: '+15550100' }}
    dial-plan: {{ country-code: '1', allow: ['+1NXXNXXXXXX'] }}
queues:
  q: {yaml}
"
    ))
    .unwrap();
    config.queues["q"].clone()
}

/// Every prompt plays 2 s.
fn two_seconds(_: &str) -> Option<Duration> {
    Some(Duration::from_secs(2))
}

fn pos(position: usize, wait_s: u64) -> Position {
    Position {
        position,
        waiting: position,
        estimated_wait: Duration::from_secs(wait_s),
    }
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn without_announcements_the_greeting_plays_at_once_then_the_music() {
    let t = Instant::now();
    let (w, first) = Waiting::join(
        queue("{ greeting: queue/welcome, announce-position: false }"),
        t,
    );
    assert_eq!(first, Some(Say::Play(vec!["queue/welcome".into()])));
    assert!(!w.wants_position());
    assert_eq!(w.poll_timeout(), None, "nothing else is ever due");
}

#[test]
fn the_greeting_waits_for_the_position_then_announcements_come_every_n_seconds() {
    let t = Instant::now();
    let q = queue("{ greeting: queue/welcome, announce-position: true, announce-every: 30s }");
    let (mut w, first) = Waiting::join(q, t);
    assert_eq!(first, None);
    assert!(w.wants_position());
    let said = w.placed(Some(&pos(3, 200)), t + s(1), true, &two_seconds);
    let Some(Say::Play(prompts)) = said else {
        panic!("{said:?}")
    };
    assert_eq!(prompts[0], "queue/welcome");
    assert!(prompts.contains(&"queue/you-are-caller".to_string()));
    assert!(prompts.contains(&"numbers/3".to_string()), "{prompts:?}");
    // 200 s is about 4 minutes.
    assert!(prompts.contains(&"numbers/4".to_string()), "{prompts:?}");
    assert_eq!(prompts.last().unwrap(), "queue/minutes");
    assert!(!w.wants_position());
    // The next one comes 30 s after this one ends (every prompt 2 s).
    let next = t + s(1) + s(2) * prompts.len() as u32 + s(30);
    assert_eq!(w.poll_timeout(), Some(next));
    assert!(w
        .on_timeout(
            next - Duration::from_millis(1),
            None,
            false,
            true,
            &two_seconds
        )
        .is_empty());
    let said = w.on_timeout(next, Some(&pos(1, 50)), false, true, &two_seconds);
    let [Say::Play(prompts)] = &said[..] else {
        panic!("{said:?}")
    };
    assert_eq!(
        prompts[0], "queue/you-are-caller",
        "no greeting the second time"
    );
    assert!(
        prompts.contains(&"queue/minute".to_string()),
        "about 1 minute"
    );
    assert!(w.poll_timeout().unwrap() > next);
}

#[test]
fn the_periodic_message_comes_every_n_seconds_and_waits_for_another_prompt_to_end() {
    let t = Instant::now();
    let q = queue("{ message: queue/web, message-every: 20s, announce-position: false }");
    let (mut w, _) = Waiting::join(q, t);
    assert_eq!(w.poll_timeout(), Some(t + s(20)));
    let said = w.on_timeout(t + s(20), None, false, true, &two_seconds);
    assert_eq!(said, vec![Say::Play(vec!["queue/web".into()])]);
    // Next: 20 s after its 2 s.
    assert_eq!(w.poll_timeout(), Some(t + s(42)));
    // Another prompt plays then: 3 s later.
    assert!(w
        .on_timeout(t + s(42), None, true, true, &two_seconds)
        .is_empty());
    assert_eq!(w.poll_timeout(), Some(t + s(45)));
    let said = w.on_timeout(t + s(45), None, false, true, &two_seconds);
    assert_eq!(said.len(), 1);
}

#[test]
fn a_callback_is_offered_after_offer_after_unless_an_agent_came_first() {
    let t = Instant::now();
    let q = queue("{ announce-position: false, callback: { trunk: carrier, offer-after: 60s } }");
    let (mut w, _) = Waiting::join(q.clone(), t);
    assert_eq!(w.poll_timeout(), Some(t + s(60)));
    let said = w.on_timeout(t + s(60), None, false, true, &two_seconds);
    assert_eq!(said, vec![Say::OfferCallback(Vec::new())]);
    assert_eq!(w.poll_timeout(), None, "offered once");

    let (mut w, _) = Waiting::join(q, t);
    w.no_offer();
    assert_eq!(w.poll_timeout(), None);
}

#[test]
fn a_long_expected_wait_brings_the_offer_with_the_announcement() {
    let t = Instant::now();
    let q = queue(
        "{ announce-position: true, announce-every: 30s, callback: { trunk: carrier, when-wait-over: 5m } }",
    );
    // A short wait: announced, no offer.
    let (mut w, _) = Waiting::join(q.clone(), t);
    let said = w.placed(Some(&pos(2, 120)), t, true, &two_seconds);
    assert!(matches!(said, Some(Say::Play(_))), "{said:?}");
    // A long one: the offer follows the announcement, and announcements stop.
    let (mut w, _) = Waiting::join(q.clone(), t);
    let said = w.placed(Some(&pos(9, 600)), t, true, &two_seconds);
    let Some(Say::OfferCallback(prompts)) = said else {
        panic!("{said:?}")
    };
    assert!(prompts.contains(&"queue/you-are-caller".to_string()));
    assert_eq!(w.poll_timeout(), None);
    // An offer that may not be made now (one was made, an agent rings):
    // the announcement plays and the next one comes.
    let (mut w, _) = Waiting::join(q, t);
    let said = w.placed(Some(&pos(9, 600)), t, false, &two_seconds);
    assert!(matches!(said, Some(Say::Play(_))), "{said:?}");
    assert!(w.poll_timeout().is_some());
}

#[test]
fn deadlines_that_fall_together_come_in_order_and_the_second_prompt_waits() {
    let t = Instant::now();
    let q = queue(
        "{ announce-position: false, message: queue/web, message-every: 20s, callback: { trunk: carrier, offer-after: 20s } }",
    );
    let (mut w, _) = Waiting::join(q, t);
    let said = w.on_timeout(t + s(20), None, false, true, &two_seconds);
    // The offer speaks: the message waits 3 s.
    assert_eq!(said, vec![Say::OfferCallback(Vec::new())]);
    assert_eq!(w.poll_timeout(), Some(t + s(23)));
}
