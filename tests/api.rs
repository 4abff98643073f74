//! The operations API against the running binary: bearer tokens and roles,
//! agents' states, queues and calls in progress (with SIPp callers), and the
//! live events over SSE and WebSocket.

mod common;

use std::time::Duration;

use common::{keys_scenario_with, phone, register, Engine};
use futures_util::StreamExt;
use serde_json::{json, Value};

const TOKENS: &str = "http:\n  tokens:\n    - { name: ops, token: admin-secret-1, role: admin }\n    - { name: lead, token: agent-secret-2, role: agent }\n    - { name: board, token: read-secret-3, role: read }\n";

fn engine(flow: &str, extra: &str) -> Engine {
    Engine::with_flow(
        flow,
        &format!(
            "{TOKENS}queues:\n  support: {{ announce-position: false }}\n  sales: {{}}\nagents:\n  - {{ id: '1001', name: Alice, password: 1001pass, queues: [support], auto-login: true }}\n  - {{ id: '1002', password: 1002pass, queues: [support, sales] }}\nregistrar: {{ algorithms: [MD5], keepalive: 0s }}\ncalls: {{ leg-check: 0s }}\n{extra}"
        ),
    )
}

struct Api {
    base: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(engine: &Engine) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", engine.ports.http()),
            http: reqwest::Client::new(),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// (status, JSON body) of a request with `token` (none: no header).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{}{path}", self.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_owned());
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    /// The body of a GET as text (panics on a status other than 200).
    fn text(&self, path: &str, token: Option<&str>) -> String {
        let (status, body) = self.call("GET", path, token, None);
        assert_eq!(status, 200, "{body}");
        match body {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None)
    }

    fn post(&self, path: &str, token: &str, body: Option<&str>) -> (u16, Value) {
        self.call("POST", path, Some(token), body)
    }
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

const ADMIN: &str = "admin-secret-1";
const AGENT: &str = "agent-secret-2";
const READ: &str = "read-secret-3";

#[test]
fn requests_without_a_valid_token_or_role_are_refused_and_change_nothing() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    let (status, body) = api.call("GET", "/api/agents", None, None);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    let (status, _) = api.get("/api/agents", "admin-secret-2");
    assert_eq!(status, 401);
    // A read token may look but not act.
    let (status, agents) = api.get("/api/agents", READ);
    assert_eq!(status, 200);
    assert_eq!(agents[0]["id"], "1001");
    assert_eq!(agents[0]["name"], "Alice");
    assert_eq!(agents[0]["state"], "logged-out");
    let (status, body) = api.post("/api/agents/1001/login", READ, None);
    assert_eq!(status, 403, "{body}");
    let (status, body) = api.post("/api/calls/nope/hangup", AGENT, None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(api.get("/api/agents/1001", READ).1["state"], "logged-out");
    // The secret never reaches the log.
    let log = engine.log();
    for secret in [ADMIN, AGENT, READ] {
        assert!(!log.contains(secret), "{secret} logged");
    }
    assert_eq!(api.get("/api/nothing", READ).0, 404);
}

#[test]
fn agents_are_logged_in_paused_and_out_through_the_api_and_bad_bodies_name_the_field() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    let (status, a) = api.post("/api/agents/1002/login", AGENT, None);
    assert_eq!(
        (status, a["state"].as_str()),
        (200, Some("available")),
        "{a}"
    );
    let (status, a) = api.post(
        "/api/agents/1002/pause",
        AGENT,
        Some(r#"{"reason": "lunch"}"#),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (a["state"].as_str(), a["reason"].as_str()),
        (Some("paused"), Some("lunch"))
    );
    // Bad bodies: 400 naming the field; the agent stays as it was.
    let (status, e) = api.post("/api/agents/1002/pause", AGENT, Some(r#"{"resaon": "x"}"#));
    assert_eq!((status, e["field"].as_str()), (400, Some("resaon")), "{e}");
    let (status, e) = api.post("/api/agents/1002/pause", AGENT, Some(r#"{"reason": 5}"#));
    assert_eq!((status, e["field"].as_str()), (400, Some("reason")), "{e}");
    let (status, e) = api.post("/api/agents/1002/pause", AGENT, Some("{not json"));
    assert_eq!(status, 400, "{e}");
    let (status, e) = api.post("/api/agents/1002/login", AGENT, Some(r#"{"x": 1}"#));
    assert_eq!(status, 400, "{e}");
    let a = api.get("/api/agents/1002", READ).1;
    assert_eq!(
        (a["state"].as_str(), a["reason"].as_str()),
        (Some("paused"), Some("lunch"))
    );
    let (status, a) = api.post("/api/agents/1002/unpause", AGENT, None);
    assert_eq!((status, a["state"].as_str()), (200, Some("available")));
    let (status, a) = api.post("/api/agents/1002/logout", ADMIN, None);
    assert_eq!((status, a["state"].as_str()), (200, Some("logged-out")));
    // A logged-out agent cannot be paused: 409, with the agent as it is.
    let (status, e) = api.post("/api/agents/1002/pause", AGENT, None);
    assert_eq!(
        (status, e["agent"]["state"].as_str()),
        (409, Some("logged-out")),
        "{e}"
    );
    assert_eq!(api.post("/api/agents/9999/login", AGENT, None).0, 404);
    assert_eq!(api.post("/api/agents/1002/dance", AGENT, None).0, 404);
    // Who did what is logged (by the token's name).
    assert!(
        engine
            .log()
            .contains("agent action from the API by=ops agent=1002 action=logout"),
        "{}",
        engine.log()
    );
}

#[test]
fn a_waiting_caller_shows_in_its_queue_and_the_calls_list_and_an_admin_can_hang_it_up() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    // The caller waits for the engine's BYE.
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 1, false);
    common::wait_for_bye(&sc);
    let caller = common::sipp_side(
        &["-sf", &sc.display().to_string(), "-s", "100"],
        common::Ports::next().spare(0),
        Some(&engine.sip.to_string()),
    );
    assert!(engine.wait_log("caller joined the queue", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(1100));
    let (status, q) = api.get("/api/queues/support", READ);
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["waiting"].as_array().map(Vec::len), Some(1), "{q}");
    let w = &q["waiting"][0];
    assert_eq!(
        (w["caller"].as_str(), w["position"].as_u64()),
        (Some("sipp"), Some(1))
    );
    assert!(w["waited_ms"].as_u64().unwrap() >= 1000, "{w}");
    assert!(q["longest_wait_ms"].as_u64().unwrap() >= 1000);
    assert_eq!(q["agents"]["logged-out"], 2, "{q}");
    let (_, calls) = api.get("/api/calls", READ);
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    let id = calls[0]["call_id"].as_str().unwrap().to_owned();
    assert_eq!(calls[0]["state"], "queued");
    assert_eq!(calls[0]["queue"], "support");
    assert_eq!(
        api.get(&format!("/api/calls/{id}"), READ).1["caller"],
        "sipp"
    );

    // /metrics says the same as the API.
    let text = api.text("/metrics", Some(READ));
    for line in [
        "hotline_calls_active{state=\"queued\"} 1",
        "hotline_queue_waiting_calls{queue=\"support\"} 1",
        "hotline_queue_waiting_calls{queue=\"sales\"} 0",
        "hotline_agents{state=\"logged-out\"} 2",
        "hotline_sip_requests_total{method=\"INVITE\"} 1",
        "hotline_sip_responses_total{code=\"200\"} 1",
        "hotline_registrations 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    let sent = metric(&text, "hotline_rtp_packets_sent_total");
    assert!(
        sent >= 40.0,
        "{sent} RTP packets sent in over a second of music"
    );

    assert_eq!(
        api.post(&format!("/api/calls/{id}/hangup"), AGENT, None).0,
        403
    );
    let (status, body) = api.post(&format!("/api/calls/{id}/hangup"), ADMIN, None);
    assert_eq!(status, 202, "{body}");
    let (ok, out) = common::finish(caller);
    assert!(ok, "the caller got no BYE:\n{out}");
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    assert_eq!(api.get("/api/calls", READ).1, json!([]));
    assert_eq!(api.get(&format!("/api/calls/{id}"), READ).0, 404);
    let q = api.get("/api/queues/support", READ).1;
    assert_eq!(q["waiting"], json!([]));
    // Today's figures count the call the API ended.
    assert_eq!(q["today"]["offered"], 1, "{q}");
}

#[test]
fn a_websocket_listener_gets_the_screen_pop_with_the_ivr_variables_before_the_agent_answers() {
    let engine = engine(
        "entry: s\nnodes:\n  s: { set: { account: '48213' }, next: q }\n  q: { queue: support }\n",
        "",
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let api = Api::new(&engine);
    let url = format!(
        "ws://127.0.0.1:{}/api/events?queue=support",
        engine.ports.http()
    );
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {READ}").parse().unwrap());
    let (mut ws, _) = api
        .rt
        .block_on(tokio_tungstenite::connect_async(req))
        .unwrap();
    // SSE too, for everything about agent 1001.
    let sse = api.rt.block_on(
        api.http
            .get(format!("{}/api/events?agent=1001", api.base))
            .bearer_auth(READ)
            .send(),
    );
    let mut sse = sse.unwrap();

    let agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let sc = keys_scenario_with(
        &engine,
        "caller.xml",
        engine.ports.spare(0),
        &[],
        1500,
        false,
    );
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");

    let events: Vec<Value> = api.rt.block_on(async {
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, ws.next()).await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                let offered = v["type"] == "agent.offered";
                got.push(v);
                if offered {
                    break;
                }
            }
        }
        got
    });
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["queue.joined", "agent.offered"], "{events:?}");
    let pop = &events[1];
    assert_eq!(pop["vars"]["account"], "48213", "{pop}");
    assert_eq!(pop["agents"], json!(["1001"]));
    assert_eq!(pop["caller"], "sipp");
    assert_eq!(pop["history"], json!([]));

    // The agent's stream: offered, then answered (the pop came first), and
    // its state changes.
    let sse_types: Vec<String> = api.rt.block_on(async {
        let mut text = String::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, sse.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"wrap-up\"") {
                break;
            }
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .map(|v| match v["state"].as_str() {
                Some(s) => format!("{}:{s}", v["type"].as_str().unwrap_or("")),
                None => v["type"].as_str().unwrap_or("").to_owned(),
            })
            .collect()
    });
    assert_eq!(
        sse_types,
        [
            "agent.state:ringing",
            "agent.offered",
            "call.answered",
            "agent.state:on-call",
            "agent.state:wrap-up"
        ],
        "{sse_types:?}"
    );
}

#[test]
fn metrics_need_a_token_unless_configured_public_for_this_machine() {
    let private = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&private);
    assert_eq!(api.call("GET", "/metrics", None, None).0, 401);
    drop(private);
    let public = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "http: { public: [metrics] }\nqueues: { support: {} }\n",
    );
    let api = Api::new(&public);
    let text = api.text("/metrics", None);
    assert!(text.contains("hotline_calls_active"), "{text}");
    // Only that page: the API still needs a token.
    assert_eq!(api.call("GET", "/api/calls", None, None).0, 401);
    assert_eq!(api.call("GET", "/wallboard", None, None).0, 401);
}

#[test]
fn the_wallboard_takes_its_token_from_the_url_and_only_it_does() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    assert_eq!(api.call("GET", "/wallboard", None, None).0, 401);
    let page = api.text(&format!("/wallboard?token={READ}"), None);
    assert!(page.contains("<title>Hotline wallboard</title>"), "{page}");
    let (status, data) = api.call("GET", &format!("/wallboard/data?token={READ}"), None, None);
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["queues"][0]["name"], "sales");
    assert_eq!(data["agents"][1]["id"], "1002");
    assert_eq!(api.call("GET", "/wallboard?token=wrong", None, None).0, 401);
    assert_eq!(
        api.call("GET", &format!("/api/queues?token={READ}"), None, None)
            .0,
        401
    );
}

#[test]
fn after_real_calls_the_report_the_api_and_the_metrics_agree_with_what_sipp_did() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    // Two callers half a second apart, each on the line 3 s: the first is
    // answered at once, the second waits for the busy agent and gives up.
    let sc = keys_scenario_with(
        &engine,
        "caller.xml",
        engine.ports.spare(0),
        &[],
        3000,
        true,
    );
    common::sipp(
        &engine,
        0,
        &sc,
        &["-s", "100", "-m", "2", "-r", "1", "-rp", "500"],
    )
    .assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");
    // Both records committed (a call's end is logged as its record is
    // queued for the store; the report reads what is committed).
    let api = Api::new(&engine);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while api
        .get("/api/cdrs?since=1h", READ)
        .1
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(std::time::Instant::now() < until, "{}", engine.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // One end for both, so time-based figures (occupancy) match too.
    let until = jiff::Timestamp::now().to_string();
    let report = common::report_json(&engine, &["--since", "10m", "--until", &until]);
    let rows = &report["rows"];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{report}");
    let r = &rows[0];
    assert_eq!(r["group"], "support");
    assert_eq!(
        (
            &r["offered"],
            &r["answered"],
            &r["abandoned"],
            &r["short_abandoned"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(1)),
        "{r}"
    );
    assert_eq!(r["service_level"], json!(0.5), "{r}");
    assert!(r["asa_seconds"].as_f64().unwrap() < 1.0, "{r}");
    let aht = r["aht_seconds"].as_f64().unwrap();
    assert!(
        (12.0..14.0).contains(&aht),
        "talk ~3 s + wrap-up 10 s: {aht}"
    );
    let occupancy = r["occupancy"]
        .as_f64()
        .expect("occupancy of the queue's agent");
    assert!(occupancy > 0.2 && occupancy <= 1.0, "{occupancy}");
    let longest = r["longest_wait_seconds"].as_f64().unwrap();
    assert!((2.0..3.5).contains(&longest), "{longest}");

    // The API computes the same rows; /metrics counted the same calls.
    let (status, from_api) = api.get(&format!("/api/kpis?since=10m&until={until}"), READ);
    assert_eq!(status, 200, "{from_api}");
    assert_eq!(from_api["rows"], report["rows"]);
    let text = api.text("/metrics", Some(READ));
    assert!(
        text.lines()
            .any(|l| l == "hotline_sip_requests_total{method=\"INVITE\"} 2"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "hotline_calls_active{state=\"talking\"} 0"),
        "{text}"
    );
    let (status, e) = api.get("/api/kpis?by=weekday", READ);
    assert_eq!((status, e["field"].as_str()), (400, Some("by")), "{e}");

    // And as a table for people.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config"])
        .arg(engine.dir.join("hotline.yaml"))
        .args(["--since", "10m"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("support"))
        .unwrap_or_else(|| panic!("{table}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..7], ["2", "1", "1", "1", "0", "50.0"], "{table}");
}

#[test]
fn the_crm_gets_the_screen_pop_retried_and_the_call_record_and_cdrs_are_served() {
    let hook = common::Ports::next().spare(0);
    let got = common::webhook_receiver(hook, "/pop");
    let engine = Engine::with_flow(
        "entry: s\nnodes:\n  s: { set: { account: '48213' }, next: q }\n  q: { queue: support }\n",
        &format!(
            "{TOKENS}queues:\n  support: {{ announce-position: false, screen-pop-url: 'http://127.0.0.1:{hook}/pop' }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\nregistrar: {{ algorithms: [MD5], keepalive: 0s }}\ncalls: {{ leg-check: 0s, end-webhook: 'http://127.0.0.1:{hook}/end' }}\n"
        ),
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let sc = keys_scenario_with(
        &engine,
        "caller.xml",
        engine.ports.spare(0),
        &[],
        1500,
        false,
    );
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert!(common::finish(agent).0);

    // The pop was refused once (500) and delivered on the retry; the
    // record followed when the call ended.
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while got.lock().unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < until,
            "{:?}\n{}",
            got.lock().unwrap(),
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = got.lock().unwrap().clone();
    let pops: Vec<&Value> = got
        .iter()
        .filter(|(p, _)| p == "/pop")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(pops.len(), 2, "{got:?}");
    assert_eq!(pops[1]["type"], "agent.offered");
    assert_eq!(pops[1]["vars"]["account"], "48213");
    let ends: Vec<&Value> = got
        .iter()
        .filter(|(p, _)| p == "/end")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ends.len(), 1, "{got:?}");
    assert_eq!(ends[0]["outcome"], "agent");
    assert_eq!(ends[0]["agent"], "1001");
    assert_eq!(ends[0]["vars"]["account"], "48213");

    // The same record from the API, as JSON and as CSV.
    let api = Api::new(&engine);
    let (status, cdrs) = api.get("/api/cdrs?queue=support", READ);
    assert_eq!(status, 200, "{cdrs}");
    assert_eq!(cdrs.as_array().map(Vec::len), Some(1));
    assert_eq!(cdrs[0]["call_id"], ends[0]["call_id"]);
    assert_eq!(cdrs[0]["vars"]["account"], "48213");
    assert_eq!(api.get("/api/cdrs?caller=nobody", READ).1, json!([]));
    assert_eq!(
        api.get("/api/cdrs?agent=1001&since=1h", READ)
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let csv = api.text("/api/cdrs?format=csv", Some(READ));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("call_id,caller,dialed"));
    assert!(
        lines[1].contains(",agent,caller,") || lines[1].contains(",agent,engine,"),
        "{csv}"
    );
    let (status, e) = api.get("/api/cdrs?format=xml", READ);
    assert_eq!((status, e["field"].as_str()), (400, Some("format")));
    let (status, _) = api.get("/api/cdrs?color=red", READ);
    assert_eq!(status, 400);
}

#[test]
fn flows_are_listed_checked_before_saving_and_reloaded_on_demand() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    let (status, flows) = api.get("/api/flows", READ);
    assert_eq!(status, 200, "{flows}");
    assert_eq!(flows["version"], 1);
    assert_eq!(flows["flows"][0]["name"], "main");
    assert_eq!(flows["flows"][0]["entry"], "q");

    // A draft is checked with the other flows, saved nowhere.
    let bad = "entry: nowhere\nnodes:\n  a: { hangup: true }\n";
    let (status, r) = api.post("/api/flows/validate?name=main", READ, Some(bad));
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["valid"], false);
    let first = r["diagnostics"][0].as_str().unwrap();
    assert!(
        first.contains("main.yaml:1:8: there is no node `nowhere`"),
        "{r}"
    );
    let good = "entry: a\nnodes:\n  a: { hangup: goodbye }\n";
    let (status, r) = api.post("/api/flows/validate?name=extra", READ, Some(good));
    assert_eq!((status, &r["valid"]), (200, &json!(true)), "{r}");
    let (status, r) = api.post("/api/flows/validate", READ, Some(good));
    assert_eq!((status, r["field"].as_str()), (400, Some("name")), "{r}");
    let (status, r) = api.post("/api/flows/validate?name=../etc", READ, Some(good));
    assert_eq!((status, r["field"].as_str()), (400, Some("name")), "{r}");
    assert_eq!(
        api.get("/api/flows", READ).1["version"],
        1,
        "validating loads nothing"
    );

    // Reload: admins only; the new version is what new calls take.
    assert_eq!(api.post("/api/flows/reload", AGENT, None).0, 403);
    let (status, r) = api.post("/api/flows/reload", ADMIN, None);
    assert_eq!((status, &r["version"]), (200, &json!(2)), "{r}");
    assert_eq!(api.get("/api/flows", READ).1["version"], 2);
    assert!(engine.log().contains("flows reloaded"), "{}", engine.log());
}

#[test]
fn the_openapi_document_names_every_route_and_every_route_it_names_exists() {
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    // The document needs no token: it holds no secret.
    let (status, doc) = api.call("GET", "/openapi.json", None, None);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 26, "{:?}", paths.keys().collect::<Vec<_>>());
    let mut checked = 0;
    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(op["x-hotline-role"].is_string());
            let concrete = path
                .replace("{action}", "login")
                .replace("{id}", "x")
                .replace("{name}", "x");
            // Only the status: event streams never end.
            let (status, fallback) = api.rt.block_on(async {
                let resp = api
                    .http
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        format!("{}{concrete}", api.base),
                    )
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body = if status == 404 {
                    resp.text().await.unwrap_or_default()
                } else {
                    String::new()
                };
                (status, body.contains("no such resource"))
            });
            assert_ne!(status, 405, "{method} {path}: not routed for this method");
            assert!(
                !fallback,
                "{method} {path}: the document names a route that does not exist"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 26);
    assert_eq!(
        api.get("/api/nothing", ADMIN).1["error"],
        "no such resource"
    );
}

/// Findings 3 and 11 of the hardening review: a page of another site cannot
/// open the live events (WebSocket or SSE) nor read the public pages under
/// a rebound name; the wallboard's `?token=` opens its event stream.
#[test]
fn pages_of_other_sites_get_no_events_and_the_wallboard_token_opens_its_stream() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        &format!("{TOKENS}  public: [wallboard]\n  origins: ['https://ops.example.com']\nqueues: {{ support: {{}} }}\n"),
    );
    let api = Api::new(&engine);
    let port = engine.ports.http();
    // A WebSocket with a valid token, opened by a page of another origin.
    let ws = |origin: Option<&str>, host: Option<&str>| {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://127.0.0.1:{port}/api/events"),
            )
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {READ}").parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        if let Some(h) = host {
            req.headers_mut().insert("host", h.parse().unwrap());
        }
        match api.rt.block_on(tokio_tungstenite::connect_async(req)) {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(ws(Some("http://evil.example"), None), 403);
    assert_eq!(ws(Some("null"), None), 403);
    assert_eq!(ws(None, Some("evil.example:8080")), 403);
    assert_eq!(ws(Some(&format!("http://127.0.0.1:{port}")), None), 101);
    assert_eq!(ws(Some("https://ops.example.com"), None), 101);
    assert_eq!(ws(None, None), 101);

    // Raw requests, to set Host and Origin as a browser would.
    let raw = |path: &str, host: &str, origin: Option<&str>| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Accept: text/event-stream\r\nConnection: close\r\n\r\n").unwrap();
        let mut head = [0u8; 512];
        let n = s.read(&mut head).unwrap_or(0);
        let text = String::from_utf8_lossy(&head[..n]).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    };
    let here = format!("127.0.0.1:{port}");
    // The public wallboard (no token) under a rebound name, and from another site.
    assert_eq!(raw("/wallboard", &here, None).0, 200);
    assert_eq!(raw("/wallboard/data", "evil.example", None).0, 403);
    assert_eq!(
        raw(
            "/wallboard/events",
            &format!("evil.example:{port}"),
            Some(&format!("http://evil.example:{port}"))
        )
        .0,
        403
    );
    assert_eq!(
        raw("/wallboard/events", &here, Some("http://evil.example")).0,
        403
    );
    // SSE of the API from another site, with the token in the URL: refused
    // (and the API never takes a token from the URL anyway).
    assert_eq!(
        raw(
            &format!("/api/events?token={READ}"),
            &here,
            Some("http://evil.example")
        )
        .0,
        403
    );
    // The wallboard's own page opens its stream with ?token= (public or not).
    let (status, head) = raw(&format!("/wallboard/events?token={READ}"), &here, None);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    // And on an engine where the wallboard is not public.
    drop(engine);
    let private = self::engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let port = private.ports.http();
    let here = format!("127.0.0.1:{port}");
    let raw = |path: &str| raw_at(port, path, &here);
    assert_eq!(raw("/wallboard/events?token=wrong"), 401);
    assert_eq!(
        raw(&format!("/wallboard/events?token={READ}&queue=support")),
        200
    );
}

fn raw_at(port: u16, path: &str, host: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Finding 12 of the hardening review: two calls that share a Call-ID (two
/// dialogs, told apart by their From tags) are two calls in the API, and an
/// admin hangs up each, the right one.
#[test]
fn two_calls_with_one_call_id_are_two_calls_and_each_can_be_hung_up() {
    use common::raw::{ack_for, collect, invite, peer, requests, responses};
    let engine = engine("entry: q\nnodes:\n  q: { queue: support }\n", "");
    let api = Api::new(&engine);
    let port = engine.ports.spare(0);
    let s = peer(port);
    for tag in ["A", "B"] {
        let text = invite(port, "dup", "")
            .replace("tag=fdup", &format!("tag=f{tag}"))
            .replace("branch=z9hG4bKdup", &format!("branch=z9hG4bKdup{tag}"));
        s.send_to(text.as_bytes(), engine.sip).unwrap();
        let got = collect(&s, Duration::from_millis(400));
        let oks = responses(&got, 200);
        let ok = &oks
            .first()
            .unwrap_or_else(|| panic!("call {tag} not answered"))
            .1;
        s.send_to(ack_for(ok, port, "dup").as_bytes(), engine.sip)
            .unwrap();
    }
    assert!(engine.wait_log("caller joined the queue", Duration::from_secs(5)));
    let (_, calls) = api.get("/api/calls", READ);
    let ids: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["call_id"].as_str())
        .collect();
    assert_eq!(ids, ["dup", "dup;from-tag=fB"], "{calls}");
    // Hang up the second, then the first: each BYE goes to its own dialog.
    for (id, tag) in [("dup%3Bfrom-tag%3DfB", "fB"), ("dup", "fA")] {
        let (status, body) = api.post(&format!("/api/calls/{id}/hangup"), ADMIN, None);
        assert_eq!(status, 202, "{id}: {body}");
        let got = collect(&s, Duration::from_millis(600));
        let byes = requests(&got, "BYE");
        assert!(!byes.is_empty(), "no BYE for {id}");
        assert!(
            byes.iter().all(|b| b
                .headers
                .get("To")
                .is_some_and(|t| t.contains(&format!("tag={tag}")))),
            "{byes:?}"
        );
        for bye in byes {
            s.send_to(common::raw::ok_to(&bye).as_bytes(), engine.sip)
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.get("/api/calls", READ).1, json!([]));
}

#[test]
fn with_log_format_json_every_line_is_an_object_and_a_calls_lines_carry_its_call_id() {
    let engine = Engine::start("log: { format: json }\n");
    let p = engine.ports;
    let mut ua = common::ua::TestUa::call(engine.sip, p.spare(0), p.spare(1), "echo", "0 101");
    std::thread::sleep(Duration::from_millis(500));
    ua.bye();
    let record = common::cdrs(&engine).pop().expect("the call's record");
    let call_id = record["call_id"].as_str().unwrap().to_owned();
    let log = engine.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "hotline ready"),
        "{log}"
    );
    let arrived = lines
        .iter()
        .find(|l| l["fields"]["message"] == "call arrived")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(arrived["span"]["call_id"], call_id.as_str(), "{arrived}");
    assert_eq!(arrived["level"], "INFO");
}
