//! The operator's dashboard and alert rules in `contrib/`: Prometheus
//! accepts the rules (`promtool check rules`) and each alert fires on the
//! series it is about and not on others (`promtool test rules`); every
//! dashboard query is valid PromQL; and every metric they use is one a
//! running engine exposes at /metrics after an ordinary queued call.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{keys_scenario_with, phone, raw, register, root, sipp, Engine};

fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    common::require("promtool", "prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The metric names (without a histogram's `_bucket`/`_sum`/`_count`) a
/// PromQL expression uses.
fn metrics_in(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("hotline_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        into.insert(base.to_owned());
    }
}

#[test]
fn the_alert_rules_fire_as_tested_and_every_metric_the_dashboard_and_rules_use_is_exposed() {
    let contrib = root().join("contrib");
    let rules_dir = contrib.join("prometheus");
    let checked = promtool(&["check", "rules", "hotline-alerts.yaml"], &rules_dir);
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    promtool(&["test", "rules", "hotline-alerts.test.yaml"], &rules_dir);

    // The dashboard: every panel's queries, checked as PromQL by making
    // each a recording rule.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(contrib.join("grafana/hotline.json")).unwrap(),
    )
    .unwrap();
    let mut used = BTreeSet::new();
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Calls now",
        "Callers waiting",
        "Service level (last 15 min)",
        "Agents by state",
        "RTP loss",
        "Store write latency",
        "Trunks up",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted}: {titles:?}");
    }
    for (i, target) in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .enumerate()
    {
        let expr = target["expr"].as_str().unwrap();
        metrics_in(expr, &mut used);
        recording.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let scratch =
        std::env::temp_dir().join(format!("hotline-dashboard-{}.yaml", std::process::id()));
    std::fs::write(&scratch, recording).unwrap();
    promtool(&["check", "rules", scratch.to_str().unwrap()], &rules_dir);
    let _ = std::fs::remove_file(&scratch);
    let rules = std::fs::read_to_string(rules_dir.join("hotline-alerts.yaml")).unwrap();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        metrics_in(line, &mut used);
    }
    assert!(used.len() >= 15, "{used:?}");

    // An engine with a queue, an agent and a trunk whose proxy answers its
    // OPTIONS; one caller queued and answered.
    let proxy_port = common::Ports::next().spare(0);
    let proxy = raw::peer(proxy_port);
    let engine = Engine::with_flows_and_trunks(
        &[("main", "entry: q\nnodes:\n  q: { queue: support }\n")],
        &format!(
            "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n  - name: carrier\n    allow: []\n    outbound: {{ proxy: 'sip:127.0.0.1:{proxy_port}', keepalive: 1s }}\n"
        ),
        "queues:\n  support: { announce-position: false }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\n",
    );
    let engine_sip = engine.sip;
    let answering = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        let mut answered = 0;
        while std::time::Instant::now() < until && answered < 2 {
            for req in raw::requests(&raw::collect(&proxy, Duration::from_millis(300)), "OPTIONS") {
                proxy
                    .send_to(raw::ok_to(&req).as_bytes(), engine_sip)
                    .unwrap();
                answered += 1;
            }
        }
        answered
    });
    let agent_port = common::Ports::next().spare(1);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 4000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");
    assert!(
        answering.join().unwrap() > 0,
        "the engine sent the trunk no OPTIONS"
    );
    std::thread::sleep(Duration::from_millis(500));

    let exposed = common::metrics(&engine);
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !exposed.contains(&format!("# TYPE {m} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard or the rules use metrics the engine does not expose: {missing:?}\n{exposed}"
    );
    assert!(
        exposed.contains("hotline_trunk_up{trunk=\"carrier\"} 1"),
        "{exposed}"
    );
    assert!(
        exposed.contains("hotline_queue_answered_total{queue=\"support\"} 1")
            && exposed.contains("hotline_queue_answered_in_time_total{queue=\"support\"} 1"),
        "{exposed}"
    );
}
