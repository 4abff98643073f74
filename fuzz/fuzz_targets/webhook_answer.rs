//! A webhook's answer, as a flow uses it: any body is JSON or an error
//! (the `on-error` branch); JSON goes `into` a variable whose fields the
//! flow then reads, says and compares. Never a panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hotline::config::Config;
use hotline::flow::{self, Action, Event, FlowSet, Run, Vars, WebhookOutcome};
use libfuzzer_sys::fuzz_target;

const FLOW: &str = "entry: lookup
nodes:
  lookup:
    webhook: { url: 'http://127.0.0.1:9/c?phone={{caller}}', into: customer }
    next: greet
    on-error: bye
  greet:
    play:
      - { say: digits, value: '{{customer.account}}' }
      - { say: number, value: '{{customer.balance}}' }
    next: check
  check:
    branch:
      - if: customer.vip == true or customer.tier == 'gold'
        then: vip
    else: bye
  vip: { set: { name: '{{customer.name}} {{customer.list.0}}' }, next: bye }
  bye: { hangup: goodbye }
";

fn set() -> &'static Arc<FlowSet> {
    static S: OnceLock<Arc<FlowSet>> = OnceLock::new();
    S.get_or_init(|| {
        let mut config = Config::parse("queues: { support: {} }\n").expect("config");
        config.routes.clear();
        // Every prompt the shipped sounds have, as the engine's catalog.
        let prompts = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sounds"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| {
                let p = e.path();
                match std::fs::read_dir(&p) {
                    Ok(sub) => sub
                        .flatten()
                        .map(|f| {
                            format!(
                                "{}/{}",
                                e.file_name().to_string_lossy(),
                                f.path().file_stem().unwrap_or_default().to_string_lossy()
                            )
                        })
                        .collect::<Vec<_>>(),
                    Err(_) => vec![p
                        .file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()],
                }
            })
            .collect();
        let catalog = flow::set::catalog(&config, prompts);
        let loaded = flow::set::load_sources(
            &config,
            Path::new("hotline.yaml"),
            &catalog,
            vec![(PathBuf::from("f.yaml"), FLOW.to_owned())],
            1,
        );
        for d in &loaded.diagnostics {
            eprintln!("{d}");
        }
        Arc::new(loaded.set.expect("the fuzz flow loads"))
    })
}

fuzz_target!(|data: &[u8]| {
    let outcome = match serde_json::from_slice(data) {
        Ok(v) => WebhookOutcome::Ok(v),
        Err(e) => WebhookOutcome::Failed(e.to_string()),
    };
    let mut vars = Vars::new();
    vars.insert("caller".into(), serde_json::json!("+15551234567"));
    let mut run = Run::new(set().clone(), 0, vars);
    let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
    let mut token = None;
    for a in run.step(Event::Start, now) {
        if let Action::Webhook { token: t, .. } = a {
            token = Some(t);
        }
    }
    let token = token.expect("the webhook is called");
    let mut actions = run.step(Event::Webhook(token, outcome), now);
    for _ in 0..8 {
        let plays: Vec<u64> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Play { token, .. } => Some(*token),
                _ => None,
            })
            .collect();
        let Some(t) = plays.last() else { break };
        actions = run.step(Event::PlayDone(*t), now);
    }
});
