//! The flow engine on a virtual clock: every node kind, driven exactly as a
//! call task drives it, and the validator's message for each kind of mistake.
//!
//! Over 800 lines: one test per node kind and per kind of mistake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::compile::Catalog;
use super::run::{Action, Event, Outcome, Run, WebhookOutcome};
use super::set::{load_sources, FlowSet};
use super::Vars;
use crate::config::Config;

const CONFIG: &str = "
schedules:
  ny:
    time-zone: America/New_York
    weekly: { mon-fri: 09:00-17:00 }
    holidays: [2026-12-25]
  berlin:
    time-zone: Europe/Berlin
    weekly: { mon-fri: 09:00-17:00 }
    holidays: [2026-12-24]
queues:
  support: {}
  sales: {}
  small: { max-length: 3 }
  callbacks: { callback: { trunk: carrier, offer-after: 60s } }
transfers: { operator: 'sip:operator@127.0.0.1:5070' }
trunks:
  - { name: carrier, allow: [], outbound: { proxy: 'sip:127.0.0.1:5090' } }
";

fn config() -> Config {
    let mut c = Config::parse(CONFIG).unwrap();
    c.routes.clear();
    c
}

fn catalog() -> Catalog {
    let mut prompts: Vec<String> = [
        "welcome",
        "greeting",
        "goodbye",
        "menu/main",
        "menu/invalid",
        "menu/no-input",
        "menu/closed",
        "ask/account",
        "ask/you-entered",
        "ask/confirm-entry",
        "ask/survey",
        "ask/voicemail",
        "beep",
        "numbers/hundred",
        "time/minutes",
        "time/seconds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    prompts.extend("0123456789".chars().map(|c| format!("digits/{c}")));
    prompts.extend((0..20).map(|n| format!("numbers/{n}")));
    super::set::catalog(&config(), prompts.into_iter().collect())
}

fn load(files: &[(&str, &str)]) -> super::Loaded {
    let sources = files
        .iter()
        .map(|(name, text)| (PathBuf::from(format!("{name}.yaml")), text.to_string()))
        .collect();
    load_sources(&config(), Path::new("hotline.yaml"), &catalog(), sources, 1)
}

fn set(files: &[(&str, &str)]) -> Arc<FlowSet> {
    let loaded = load(files);
    match loaded.set {
        Some(s) => Arc::new(s),
        None => panic!(
            "flows invalid:\n{}",
            loaded
                .diagnostics
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The problems, as `path:line:col: message` without the snippet.
fn problems(files: &[(&str, &str)]) -> Vec<String> {
    load(files)
        .diagnostics
        .into_iter()
        .map(|mut d| {
            d.snippet = None;
            d.to_string()
        })
        .collect()
}

/// A call on a virtual clock: events in, actions recorded.
struct Sim {
    run: Run,
    now: Timestamp,
    actions: Vec<Action>,
}

impl Sim {
    fn new(set: Arc<FlowSet>, flow: &str) -> Sim {
        let f = set.flow(flow).unwrap();
        let mut vars = Vars::new();
        vars.insert("caller".into(), json!("+15551230000"));
        Sim::at(set, f, vars, "2026-11-23T15:00:00Z")
    }

    fn at(set: Arc<FlowSet>, flow: usize, vars: Vars, now: &str) -> Sim {
        let mut s = Sim {
            run: Run::new(set, flow, vars),
            now: now.parse().unwrap(),
            actions: Vec::new(),
        };
        s.send(Event::Start);
        s
    }

    fn send(&mut self, e: Event) -> Vec<Action> {
        let a = self.run.step(e, self.now);
        self.actions.extend(a.clone());
        a
    }

    fn last_play(&self) -> (u64, Vec<String>) {
        self.actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Play { token, prompts, .. } => Some((*token, prompts.clone())),
                _ => None,
            })
            .expect("nothing was played")
    }

    /// The prompt that is playing ends.
    fn play_done(&mut self) -> Vec<Action> {
        let (t, _) = self.last_play();
        self.send(Event::PlayDone(t))
    }

    /// The timer that is set fires (the clock moves on by its duration).
    fn timeout(&mut self) -> Vec<Action> {
        let (t, after) = self
            .actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Timer { token, after } => Some((*token, *after)),
                _ => None,
            })
            .expect("no timer");
        self.now += jiff::SignedDuration::try_from(after).unwrap();
        self.send(Event::Timer(t))
    }

    fn keys(&mut self, keys: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for k in keys.chars().filter(|c| !c.is_whitespace()) {
            out.extend(self.send(Event::Digit(k)));
        }
        out
    }

    fn node(&self) -> &str {
        self.run.node_name()
    }

    fn var(&self, name: &str) -> Option<&serde_json::Value> {
        self.run.vars().get(name)
    }
}

fn played(actions: &[Action]) -> Vec<Vec<String>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Play { prompts, .. } => Some(prompts.clone()),
            _ => None,
        })
        .collect()
}

const MAIN: &str = r##"
flow: main
entry: hello
on-error: oops
nodes:
  hello:
    play: greeting
    barge-in: true
    next: menu
  menu:
    menu:
      prompt: menu/main
      options: { "1": sales, "2": account, "*": bye }
      timeout: 5s
      retries: 2
      no-input: menu/no-input
      invalid: menu/invalid
    exhausted: support
  account:
    collect:
      prompt: ask/account
      into: account
      min: 4
      max: 10
      end: "#"
      timeout: 6s
      inter-digit-timeout: 3s
      retries: 1
      invalid: menu/invalid
    next: support
    exhausted: bye
  sales:
    queue: sales
    priority: "{{caller == '+15551230000' ? 7 : 0}}"
  support:
    queue: support
    skills: [english]
  oops:
    hangup: goodbye
  bye:
    hangup: goodbye
"##;

#[test]
fn play_then_menu_choice() {
    let mut s = Sim::new(set(&[("main", MAIN)]), "main");
    assert_eq!(s.last_play().1, ["greeting"]);
    s.play_done();
    assert_eq!(s.node(), "menu");
    assert_eq!(s.last_play().1, ["menu/main"]);
    let a = s.keys("1");
    assert!(
        a.contains(&Action::StopPlay),
        "a key interrupts the menu prompt"
    );
    assert!(a.contains(&Action::Enqueue {
        queue: "sales".into(),
        priority: 7,
        skills: vec![]
    }));
    assert_eq!(
        s.run.outcome(),
        Some(&Outcome::Queued {
            queue: "sales".into()
        })
    );
}

#[test]
fn barge_in_carries_the_key_to_the_menu() {
    let mut s = Sim::new(set(&[("main", MAIN)]), "main");
    let a = s.keys("2");
    assert_eq!(a[0], Action::StopPlay);
    // The menu takes the key at once, without playing its prompt.
    assert_eq!(s.node(), "account");
    assert_eq!(played(&a), vec![vec!["ask/account".to_string()]]);
}

#[test]
fn without_barge_in_keys_during_a_prompt_are_ignored() {
    let f = "entry: a\nnodes:\n  a: { play: greeting, next: m }\n  m:\n    menu: { prompt: menu/main, options: { \"1\": q } }\n    exhausted: q\n  q: { queue: support }\n";
    let mut s = Sim::new(set(&[("f", f)]), "f");
    assert!(s.keys("1").is_empty());
    s.play_done();
    assert_eq!(s.node(), "m");
    assert_eq!(s.last_play().1, ["menu/main"]);
}

#[test]
fn menu_retries_then_exhausted() {
    let mut s = Sim::new(set(&[("main", MAIN)]), "main");
    s.play_done();
    s.play_done(); // menu prompt over: the timer runs
    let a = s.timeout();
    assert_eq!(
        played(&a),
        vec![vec!["menu/no-input".to_string(), "menu/main".into()]]
    );
    let a = s.keys("7");
    assert_eq!(
        played(&a),
        vec![vec!["menu/invalid".to_string(), "menu/main".into()]]
    );
    assert_eq!(s.node(), "menu");
    // The third failure leaves by `exhausted`.
    let a = s.keys("8");
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Enqueue { queue, .. } if queue == "support")));
}

#[test]
fn collect_with_terminator_min_max_and_timeouts() {
    let set = set(&[("main", MAIN)]);
    let mut s = Sim::new(set.clone(), "main");
    s.keys("2");
    s.play_done();
    s.keys("1234#");
    assert_eq!(s.var("account"), Some(&json!("1234")));
    assert_eq!(s.node(), "support");

    // Ten digits end the entry without `#`.
    let mut s = Sim::new(set.clone(), "main");
    s.keys("2 0123456789");
    assert_eq!(s.var("account"), Some(&json!("0123456789")));

    // A pause after enough digits ends the entry too.
    let mut s = Sim::new(set.clone(), "main");
    s.keys("2 55555");
    let a = s.timeout();
    assert!(matches!(a.last(), Some(Action::Enqueue { .. })));
    assert_eq!(s.var("account"), Some(&json!("55555")));

    // Too short: the invalid prompt and the question again; twice: exhausted.
    let mut s = Sim::new(set, "main");
    s.keys("2 12#");
    assert_eq!(s.last_play().1, ["menu/invalid", "ask/account"]);
    assert_eq!(s.var("account"), None);
    s.play_done();
    let a = s.timeout(); // nothing typed within 6 s
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Entered { node, .. } if node == "bye")));
    assert_eq!(s.last_play().1, ["goodbye"]);
    assert_eq!(s.play_done(), vec![Action::Hangup]);
    assert_eq!(s.run.outcome(), Some(&Outcome::Ended));
}

#[test]
fn collect_pattern_and_confirmation() {
    let f = r#"
entry: ask
nodes:
  ask:
    collect:
      prompt: ask/account
      into: zip
      pattern: "[1-9]XXXX"
      confirm: true
    next: done
    exhausted: done
  done: { queue: support }
"#;
    let set = set(&[("f", f)]);
    let mut s = Sim::new(set.clone(), "f");
    s.keys("01234");
    // 0 cannot start the entry: the question is asked again.
    assert_eq!(played(&s.actions), vec![vec!["ask/account".to_string()]; 2]);
    assert_eq!(s.var("zip"), None);
    s.keys("12345");
    assert_eq!(
        s.last_play().1,
        [
            "ask/you-entered",
            "digits/1",
            "digits/2",
            "digits/3",
            "digits/4",
            "digits/5",
            "ask/confirm-entry"
        ]
    );
    // 2: enter it again.
    s.keys("2");
    assert_eq!(s.last_play().1, ["ask/account"]);
    s.keys("54321");
    s.play_done();
    s.keys("1");
    assert_eq!(s.var("zip"), Some(&json!("54321")));
    assert_eq!(s.node(), "done");
}

#[test]
fn hours_in_two_time_zones_across_dst_and_holidays() {
    let f = "entry: h\nnodes:\n  h: { hours: ny, open: o, closed: c }\n  o: { queue: support }\n  c: { hangup: goodbye }\n";
    let g = "entry: h\nnodes:\n  h: { hours: berlin, open: o, closed: c }\n  o: { queue: support }\n  c: { hangup: goodbye }\n";
    let set = set(&[("ny", f), ("berlin", g)]);
    let outcome = |flow: &str, at: &str| {
        let s = Sim::at(set.clone(), set.flow(flow).unwrap(), Vars::new(), at);
        s.node().to_owned()
    };
    // New York: 09:00 EST is 14:00Z before 8 March 2026, 13:00Z after.
    assert_eq!(outcome("ny", "2026-03-06T13:30:00Z"), "c");
    assert_eq!(outcome("ny", "2026-03-06T14:00:00Z"), "o");
    assert_eq!(outcome("ny", "2026-03-09T13:00:00Z"), "o");
    // Berlin: 09:00 CET is 08:00Z before 29 March 2026, 07:00Z after.
    assert_eq!(outcome("berlin", "2026-03-27T07:30:00Z"), "c");
    assert_eq!(outcome("berlin", "2026-03-30T07:30:00Z"), "o");
    // Holidays: Christmas Eve closes Berlin only, Christmas Day New York.
    assert_eq!(outcome("berlin", "2026-12-24T10:00:00Z"), "c");
    assert_eq!(outcome("ny", "2026-12-24T15:00:00Z"), "o");
    assert_eq!(outcome("ny", "2026-12-25T15:00:00Z"), "c");
}

const LOOKUP: &str = r#"
entry: lookup
on-error: fallback
nodes:
  lookup:
    webhook:
      url: "http://crm.example/customers?phone={{caller}}"
      headers: { Authorization: "Bearer t0ken" }
      into: customer
      timeout: 2s
    next: vip
    on-error: fallback
    on-timeout: slow
  vip:
    branch:
      - if: customer.vip and customer.tier >= 2
        then: vip-queue
    else: normal
  vip-queue:
    queue: support
    priority: "{{customer.tier}}"
  normal:
    set: { greeted: "Hello {{customer.name}}" }
    next: q
  q: { queue: sales }
  fallback: { queue: support }
  slow: { hangup: goodbye }
"#;

fn webhook_token(a: &[Action]) -> u64 {
    a.iter()
        .find_map(|x| match x {
            Action::Webhook { token, request } => {
                assert_eq!(
                    request.url, "http://crm.example/customers?phone=%2B15551230000",
                    "a value is encoded for the URL: `+` would arrive as a space"
                );
                assert_eq!(
                    request.headers,
                    vec![("Authorization".to_string(), "Bearer t0ken".to_string())]
                );
                assert_eq!(request.timeout, Duration::from_secs(2));
                Some(*token)
            }
            _ => None,
        })
        .expect("no webhook")
}

#[test]
fn webhook_results_drive_branches() {
    let set = set(&[("lookup", LOOKUP)]);
    let mut s = Sim::new(set.clone(), "lookup");
    let t = webhook_token(&s.actions);
    let a = s.send(Event::Webhook(
        t,
        WebhookOutcome::Ok(json!({"name": "Ada", "vip": true, "tier": 3})),
    ));
    assert!(a.contains(&Action::Enqueue {
        queue: "support".into(),
        priority: 3,
        skills: vec![]
    }));

    let mut s = Sim::new(set.clone(), "lookup");
    let t = webhook_token(&s.actions);
    s.send(Event::Webhook(
        t,
        WebhookOutcome::Ok(json!({"name": "Bob", "vip": false})),
    ));
    assert_eq!(s.var("greeted"), Some(&json!("Hello Bob")));
    assert_eq!(s.node(), "q");

    // Down: the error branch, logged.
    let mut s = Sim::new(set.clone(), "lookup");
    let t = webhook_token(&s.actions);
    let a = s.send(Event::Webhook(
        t,
        WebhookOutcome::Failed("cannot connect".into()),
    ));
    assert!(matches!(&a[0], Action::Error { message, .. } if message.contains("cannot connect")));
    assert_eq!(s.node(), "fallback");

    // Slow: the timeout branch.
    let mut s = Sim::new(set.clone(), "lookup");
    let t = webhook_token(&s.actions);
    s.send(Event::Webhook(t, WebhookOutcome::TimedOut));
    assert_eq!(s.node(), "slow");

    // A missing field: the branch fails, and the flow's on-error takes the call.
    let mut s = Sim::new(set, "lookup");
    let t = webhook_token(&s.actions);
    let a = s.send(Event::Webhook(
        t,
        WebhookOutcome::Ok(json!({"name": "Cy", "vip": true})),
    ));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Error { message, .. } if message.contains("customer.tier"))));
    assert_eq!(s.node(), "fallback");
    // A stale result (an old token) changes nothing.
    assert!(s
        .send(Event::Webhook(t, WebhookOutcome::TimedOut))
        .is_empty());
}

#[test]
fn transfer_goto_and_hangup() {
    let a = "entry: x\nnodes:\n  x: { goto: b }\n";
    let b = "entry: y\nnodes:\n  y: { transfer: operator, on-error: busy }\n  busy: { hangup: goodbye }\n";
    let set = set(&[("a", a), ("b", b)]);
    let transfer_token = |s: &Sim| {
        s.actions
            .iter()
            .find_map(|x| match x {
                Action::Transfer { token, target, uri } => {
                    assert_eq!(
                        (target.as_str(), uri.as_str()),
                        ("operator", "sip:operator@127.0.0.1:5070")
                    );
                    Some(*token)
                }
                _ => None,
            })
            .expect("no transfer")
    };
    let mut s = Sim::new(set.clone(), "a");
    assert_eq!(s.run.flow_name(), "b");
    let t = transfer_token(&s);
    assert_eq!(s.run.outcome(), None, "still ringing");
    s.send(Event::Transferred(t, Ok(())));
    assert_eq!(
        s.run.outcome(),
        Some(&Outcome::Transferred {
            target: "operator".into()
        })
    );
    // Busy or no answer: the node's error path.
    let mut s = Sim::new(set, "a");
    let t = transfer_token(&s);
    let a = s.send(Event::Transferred(t, Err(super::Failure::Refused(486))));
    assert!(matches!(&a[0], Action::Error { message, .. } if message.contains("486")));
    assert_eq!(s.node(), "busy");
    let h = "entry: x\nnodes:\n  x: { hangup: true }\n";
    let s = Sim::new(self::set(&[("h", h)]), "h");
    assert_eq!(s.actions.last(), Some(&Action::Hangup));
}

#[test]
fn voicemail_records_until_the_end_key_or_hangup() {
    let f = r#"
entry: vm
nodes:
  vm:
    voicemail: { prompt: ask/voicemail, mailbox: sales, max: 90s }
    next: bye
  bye: { hangup: goodbye }
"#;
    let set = set(&[("f", f)]);
    let mut s = Sim::new(set.clone(), "f");
    assert_eq!(s.last_play().1, ["ask/voicemail", "beep"]);
    // Keys during the prompt do not start or stop anything.
    assert!(s.keys("#").is_empty());
    let a = s.play_done();
    let token = match &a[..] {
        [Action::Record { token, max, kind }] => {
            assert_eq!(*max, Duration::from_secs(90));
            assert_eq!(
                *kind,
                super::node::RecordKind::Voicemail {
                    mailbox: "sales".into()
                }
            );
            *token
        }
        other => panic!("{other:?}"),
    };
    assert!(s.keys("5").is_empty());
    assert_eq!(s.keys("#"), vec![Action::StopRecord]);
    s.send(Event::Recorded(token, Ok("data/voicemail/x.wav".into())));
    assert_eq!(s.node(), "bye");

    // Hanging up is how most callers end a message: it is kept.
    let mut s = Sim::new(set, "f");
    s.play_done();
    assert_eq!(s.send(Event::Hangup), vec![Action::StopRecord]);
    assert_eq!(s.run.outcome(), Some(&Outcome::CallerHungUp));
}

#[test]
fn survey_takes_0_to_10() {
    let f = r#"
entry: s
nodes:
  s:
    survey: { prompt: ask/survey, question: nps, into: score, invalid: menu/invalid }
    next: bye
  bye: { hangup: goodbye }
"#;
    let set = set(&[("f", f)]);
    let save = |a: &[Action]| {
        a.iter().find_map(|x| match x {
            Action::SaveSurvey {
                token,
                score,
                question,
            } => {
                assert_eq!(question, "nps");
                Some((*token, *score))
            }
            _ => None,
        })
    };
    let mut s = Sim::new(set.clone(), "f");
    let a = s.keys("7");
    let (t, score) = save(&a).unwrap();
    assert_eq!(score, 7);
    s.send(Event::Saved(t, Ok(())));
    assert_eq!(s.var("score"), Some(&json!(7)));
    assert_eq!(s.node(), "bye");

    // "1" may start "10".
    let mut s = Sim::new(set.clone(), "f");
    assert!(save(&s.keys("1")).is_none());
    assert_eq!(save(&s.keys("0")).unwrap().1, 10);
    let mut s = Sim::new(set.clone(), "f");
    s.keys("1");
    assert_eq!(save(&s.timeout()).unwrap().1, 1);
    // 11 is not on the scale: asked again.
    let mut s = Sim::new(set, "f");
    let a = s.keys("11");
    assert!(save(&a).is_none());
    assert_eq!(s.last_play().1, ["menu/invalid", "ask/survey"]);
}

#[test]
fn say_number_and_digits() {
    let f = r#"
entry: p
nodes:
  p:
    play:
      - say: number
        value: "{{n}}"
      - say: digits
        value: "{{caller}}"
    next: q
  q: { queue: support }
"#;
    let set = set(&[("f", f)]);
    let mut vars = Vars::new();
    vars.insert("n".into(), json!(115));
    vars.insert("caller".into(), json!("+12"));
    let s = Sim::at(set, 0, vars, "2026-11-23T15:00:00Z");
    assert_eq!(
        s.last_play().1,
        [
            "numbers/1",
            "numbers/hundred",
            "numbers/15",
            "digits/1",
            "digits/2"
        ]
    );
    let mut out = Vec::new();
    super::run::duration_prompts(125, &mut out);
    assert_eq!(
        out,
        ["numbers/2", "time/minutes", "numbers/5", "time/seconds"]
    );
    out.clear();
    super::run::number_prompts(2_034, &mut out);
    assert_eq!(
        out,
        ["numbers/2", "numbers/thousand", "numbers/30", "numbers/4"]
    );
}

#[test]
fn a_call_keeps_the_version_it_started_with() {
    let v1 = set(&[("main", MAIN)]);
    let mut s = Sim::new(v1, "main");
    // A new version is loaded meanwhile; this call's run holds version 1.
    let _v2 = set(&[("main", &MAIN.replace("greeting", "welcome"))]);
    s.play_done();
    assert_eq!(s.run.version(), 1);
    assert_eq!(s.last_play().1, ["menu/main"]);
}

// ---- the validator: one broken flow per kind of mistake ----

fn one(name: &str, text: &str) -> Vec<String> {
    problems(&[(name, text)])
}

#[test]
fn yaml_and_type_errors_have_positions() {
    let p = one("f", "entry: a\nnodes:\n  a: { play: [welcome\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p, ["f.yaml:3:14: unclosed bracket '['"]);
    let p = one("f", "entry: a\nnodes:\n  a:\n    menu:\n      options: { \"1\": a }\n      retries: many\n    exhausted: a\n");
    assert!(p[0].starts_with("f.yaml:6:16: "), "{p:?}");
    assert!(p[0].contains("u32") || p[0].contains("integer"), "{p:?}");
}

#[test]
fn unknown_keys_get_a_suggestion() {
    let p = one(
        "f",
        "entry: a\nnodes:\n  a:\n    play: welcome\n    nxet: a\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("f.yaml:5:5: unknown field `nxet`"),
        "{p:?}"
    );
    assert!(p[0].ends_with("(did you mean `next`?)"), "{p:?}");
}

#[test]
fn references_to_missing_things() {
    let f = "entry: start\nnodes:\n  start:\n    play: welcom\n    next: chek\n  check:\n    hours: nights\n    open: q\n    closed: t\n  q: { queue: suport }\n  t: { transfer: anywhere }\n  g: { goto: elsewhere }\n";
    let p = one("f", f);
    let expect = [
        "f.yaml:4:11: there is no prompt `welcom` in the sounds directory (did you mean `welcome`?)",
        "f.yaml:5:11: there is no node `chek` in this flow (did you mean `check`?)",
        "f.yaml:7:12: there is no schedule `nights` under `schedules:` in the config",
        "f.yaml:10:15: there is no queue `suport` under `queues:` in the config (did you mean `support`?)",
        "f.yaml:11:18: there is no transfer target `anywhere` under `transfers:` in the config; a flow may only transfer to targets listed there",
    ];
    for e in expect {
        assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
    }
    // The goto target is checked once the set is known.
    let p = one("g", "entry: g\nnodes:\n  g: { goto: elsewhere }\n");
    assert_eq!(p, ["g.yaml:3:14: there is no flow `elsewhere` to go to"]);
    let p = one("f", "entry: nowhere\nnodes:\n  a: { hangup: true }\n");
    assert_eq!(p[0], "f.yaml:1:8: there is no node `nowhere` in this flow");
}

#[test]
fn a_queue_that_turns_callers_away_warns_when_its_node_has_nowhere_to_send_them() {
    let warnings = |flow: &str| -> Vec<String> {
        let loaded = load(&[("f", flow)]);
        assert!(loaded.set.is_some(), "a warning does not refuse the flow");
        loaded
            .diagnostics
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.snippet = None;
                d.to_string()
            })
            .collect()
    };
    assert_eq!(
        warnings("entry: q\nnodes:\n  q: { queue: small }\n"),
        ["f.yaml:3:15: warning: the queue `small` may turn callers away (join-empty: false, leave-empty or max-length); without `on-timeout` they are hung up"]
    );
    assert!(warnings(
        "entry: q\nnodes:\n  q: { queue: small, on-timeout: bye }\n  bye: { hangup: goodbye }\n"
    )
    .is_empty());
    assert!(warnings("entry: q\nnodes:\n  q: { queue: support }\n").is_empty());
}

#[test]
fn unreachable_nodes_are_warnings() {
    let loaded = load(&[(
        "f",
        "entry: a\nnodes:\n  a: { hangup: true }\n  lost: { hangup: goodbye }\n",
    )]);
    assert!(loaded.set.is_some(), "a warning does not refuse the flow");
    let p: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.snippet = None;
            d.to_string()
        })
        .collect();
    assert_eq!(
        p,
        ["f.yaml:4:3: warning: the node `lost` is never reached from `a`"]
    );
}

#[test]
fn loops_that_never_wait_are_refused_across_flows() {
    let a = "entry: x\nnodes:\n  x: { set: { n: 1 }, next: y }\n  y:\n    branch:\n      - if: n == 1\n        then: z\n    else: end\n  z: { goto: b }\n  end: { hangup: true }\n";
    let b = "entry: w\nnodes:\n  w: { goto: a }\n";
    let p = problems(&[("a", a), ("b", b)]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("never waits for the caller"), "{p:?}");
    assert!(p[0].contains("a:x → a:y → a:z → b:w → a:x"), "{p:?}");
    // A loop through a menu waits: it is fine.
    let ok = "entry: m\nnodes:\n  m:\n    menu: { prompt: menu/main, options: { \"1\": s } }\n    exhausted: m\n  s: { set: { n: 1 }, next: m }\n";
    assert!(problems(&[("ok", ok)]).is_empty());
}

#[test]
fn menu_mistakes() {
    let f = "entry: m\nnodes:\n  m:\n    menu:\n      prompt: menu/main\n      options:\n        \"1\": q\n        \"12\": q\n        \"1\": q\n  q: { queue: support }\n";
    let p = one("f", f);
    assert!(p.contains(&"f.yaml:8:9: `12` cannot be pressed: a menu key is one of 0-9, * or # (quote * and #: \"*\")".to_string()), "{p:#?}");
    assert!(
        p.contains(&"f.yaml:9:9: the key `1` is given twice in this menu".to_string()),
        "{p:#?}"
    );
    // Retries with nowhere to go after the last one.
    assert!(p.contains(&"f.yaml:3:3: the node `m` needs `exhausted:` (where the caller goes after the last failed attempt)".to_string()), "{p:#?}");
}

#[test]
fn node_shape_mistakes() {
    let p = one(
        "f",
        "entry: a\nnodes:\n  a: { play: welcome, queue: support, next: a }\n",
    );
    assert_eq!(p, ["f.yaml:3:3: the node `a` has both `play` and `queue`: a node does one thing, so split it in two"]);
    let p = one("f", "entry: a\nnodes:\n  a: { next: a }\n");
    assert!(
        p[0].starts_with("f.yaml:3:3: the node `a` does nothing: give it one of play, menu,"),
        "{p:?}"
    );
    let p = one(
        "f",
        "entry: a\nnodes:\n  a: { play: welcome, next: b, open: b }\n  b: { hangup: true }\n",
    );
    assert_eq!(
        p,
        ["f.yaml:3:3: `open` has no meaning on a `play` node (it takes: next, barge-in)"]
    );
    let p = one("f", "entry: a\nnodes:\n  a:\n    collect: { into: n, min: 6, max: 4 }\n    next: a\n    exhausted: a\n");
    assert_eq!(
        p,
        ["f.yaml:4:38: `max` (4) is below `min` (6): no entry could ever be valid"]
    );
    let p = one("f", "entry: a\nnodes:\n  a:\n    branch:\n      - if: \"n = 1\"\n        then: a\n    else: a\n");
    assert_eq!(
        p,
        ["f.yaml:5:13: in `n = 1`: `=` is not a comparison: write `==` (at character 3)"]
    );
}

/// The keys serde accepts at a place in a flow, read from its "unknown
/// field" message, so the schema test follows the model without a list.
fn accepted_keys(yaml_with_zzz: &str) -> std::collections::BTreeSet<String> {
    let err = super::compile::parse(yaml_with_zzz)
        .unwrap_err()
        .without_snippet()
        .to_string();
    let list = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    let list = list.split(" at line").next().unwrap_or(list);
    list.split(',')
        .map(|k| k.trim().trim_matches('`').to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn the_json_schema_names_exactly_the_keys_the_loader_accepts() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../ivr-flows/schema.json")).unwrap();
    let keys = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let node = &schema["$defs"]["node"];
    let places = [
        ("entry: a\nzzz: 1\nnodes: {}\n", &schema),
        ("entry: a\nnodes:\n  a: { zzz: 1 }\n", node),
        (
            "entry: a\nnodes:\n  a: { menu: { zzz: 1 } }\n",
            &node["properties"]["menu"],
        ),
        (
            "entry: a\nnodes:\n  a: { collect: { zzz: 1 } }\n",
            &node["properties"]["collect"],
        ),
        (
            "entry: a\nnodes:\n  a: { webhook: { zzz: 1 } }\n",
            &node["properties"]["webhook"],
        ),
        (
            "entry: a\nnodes:\n  a: { survey: { zzz: 1 } }\n",
            &node["properties"]["survey"],
        ),
        (
            "entry: a\nnodes:\n  a: { record: { zzz: 1 } }\n",
            &schema["$defs"]["record"],
        ),
        (
            "entry: a\nnodes:\n  a: { branch: [ { zzz: 1 } ] }\n",
            &node["properties"]["branch"]["items"],
        ),
    ];
    for (yaml, place) in places {
        assert_eq!(
            accepted_keys(yaml),
            keys(place),
            "schema and loader differ for {yaml:?}"
        );
    }
}

#[test]
fn a_transfer_error_path_counts_as_reachable() {
    let loaded = load(&[(
        "f",
        "entry: x\nnodes:\n  x: { transfer: operator, on-error: busy }\n  busy: { hangup: goodbye }\n",
    )]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
}

#[test]
fn a_queue_node_leaves_by_on_timeout_when_the_wait_is_too_long() {
    let f =
        "entry: q\nnodes:\n  q: { queue: support, on-timeout: vm }\n  vm: { hangup: goodbye }\n";
    let mut s = Sim::new(set(&[("f", f)]), "f");
    assert!(s.run.leaves_queue_on_timeout());
    assert_eq!(
        s.run.outcome(),
        Some(&Outcome::Queued {
            queue: "support".into()
        })
    );
    s.send(Event::QueueTimeout);
    assert_eq!(s.node(), "vm");
    assert_eq!(s.last_play().1, ["goodbye"]);
    // Without on-timeout, the caller stays queued.
    let g = "entry: q\nnodes:\n  q: { queue: support }\n";
    let mut s = Sim::new(set(&[("g", g)]), "g");
    assert!(!s.run.leaves_queue_on_timeout());
    assert!(s.send(Event::QueueTimeout).is_empty());
}

#[test]
fn a_callback_node_books_in_its_queue_and_goes_on_by_next_or_on_error() {
    let flow = "entry: cb\nnodes:\n  cb: { callback: callbacks, next: booked, on-error: sorry }\n  booked: { hangup: goodbye }\n  sorry: { hangup: menu/closed }\n";
    let set = set(&[("f", flow)]);
    let mut s = Sim::new(set.clone(), "f");
    let token = s
        .actions
        .iter()
        .find_map(|a| match a {
            Action::OfferCallback { token, queue } if queue == "callbacks" => Some(*token),
            _ => None,
        })
        .expect("the callback is offered");
    // Keys belong to the offer (the call task takes them): the flow waits.
    assert!(s.send(Event::Digit('1')).is_empty());
    s.send(Event::CallbackBooked(token + 1, Ok(())));
    assert_eq!(s.run.node_name(), "cb", "another token changes nothing");
    s.send(Event::CallbackBooked(token, Ok(())));
    assert_eq!(s.run.node_name(), "booked");
    let mut s = Sim::new(set, "f");
    let token = s
        .actions
        .iter()
        .find_map(|a| match a {
            Action::OfferCallback { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    s.send(Event::CallbackBooked(token, Err(super::Failure::NoNumber)));
    assert_eq!(s.run.node_name(), "sorry");
}

#[test]
fn a_callback_node_needs_a_queue_that_offers_callbacks_and_a_next() {
    let flow = "entry: cb\nnodes:\n  cb: { callback: support, next: bye }\n  bye: { hangup: true }\n  cb2: { callback: callbackz, on-error: bye }\n";
    let p = problems(&[("f", flow)]);
    assert!(
        p.iter()
            .any(|m| m.starts_with("f.yaml:3:19: the queue `support` offers no callbacks")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("f.yaml:5:20:") && m.contains("did you mean `callbacks`")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m == "f.yaml:5:3: the node `cb2` needs `next:` (where the call goes once the callback is booked)"),
        "{p:?}"
    );
}
