//! The configuration's tests: every key's default, check and words.

use super::*;

#[test]
fn a_dual_stack_engine_has_an_address_per_family_and_uses_the_peers() {
    let c = Config::parse(
        "sip: { listen: ['0.0.0.0:5060', '[::]:5060'], advertise: ['203.0.113.5', '2001:db8::5'] }\n\
rtp: { bind: ['0.0.0.0', '::'], advertise: ['203.0.113.5', '2001:db8::5'] }\n",
    )
    .unwrap();
    let v6: IpAddr = "2001:db8::77".parse().unwrap();
    let v4: IpAddr = "198.51.100.7".parse().unwrap();
    assert_eq!(
        c.sip_address_for(v6),
        "2001:db8::5".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        c.sip_address_for(v4),
        "203.0.113.5".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        c.media_address_for(v6),
        "2001:db8::5".parse::<IpAddr>().unwrap()
    );
    assert_eq!(c.media_address(), "203.0.113.5".parse::<IpAddr>().unwrap());
    // One family only: its address whatever the peer.
    let c = Config::parse("rtp: { bind: '::1' }\n").unwrap();
    assert_eq!(c.media_address_for(v4), "::1".parse::<IpAddr>().unwrap());
    let e = Config::parse("sip: { listen: ['127.0.0.1:5060', '127.0.0.2:5060'] }\n").unwrap_err();
    assert!(e.to_string().contains("two addresses of one family"), "{e}");
}

#[test]
fn empty_config_is_the_loopback_demo() {
    let c = Config::parse("").unwrap();
    assert_eq!(
        c.sip.listen.primary(),
        "127.0.0.1:5060".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.sounds_dir, PathBuf::from("sounds"));
    assert!(c.trunk_for("127.0.0.1".parse().unwrap()).is_none());
}

#[test]
fn trunk_acl_matches_blocks() {
    let c = Config::parse("trunks:\n  - name: lo\n    allow: [127.0.0.0/8, '::1']\n").unwrap();
    assert_eq!(
        c.trunk_for("127.4.5.6".parse().unwrap()).unwrap().name,
        "lo"
    );
    assert!(c.trunk_for("::1".parse().unwrap()).is_some());
    assert!(c.trunk_for("10.0.0.1".parse().unwrap()).is_none());
    assert!(c.trunks[0].symmetric_rtp);
}

#[test]
fn connection_budgets_keep_each_listeners_defaults_for_what_is_not_given() {
    let c = Config::parse(
        "sip:\n  connections: { max: 50, idle-timeout: 30s }\nhttp:\n  connections: { per-source: 8 }\n",
    )
    .unwrap();
    let sip = c.sip.connections;
    assert_eq!(
        (sip.max, sip.per_source),
        (50, ConnectionLimits::SIP.per_source)
    );
    assert_eq!(sip.idle_timeout, Duration::from_secs(30));
    let http = c.http.connections;
    assert_eq!((http.max, http.per_source), (ConnectionLimits::HTTP.max, 8));
    let err = Config::parse("http:\n  connections: { idle-timeout: 5s }\n").unwrap_err();
    assert!(
        err.contains("`idle-timeout` is for SIP connections"),
        "{err}"
    );
    let err = Config::parse("sip:\n  connections: { maxx: 5 }\n").unwrap_err();
    assert!(err.contains("unknown field `maxx`"), "{err}");
}

#[test]
fn https_takes_a_certificate_and_a_key() {
    let c =
        Config::parse("http:\n  tls: { cert: /etc/hotline/web.pem, key: /etc/hotline/web.key }\n")
            .unwrap();
    let tls = c.http.tls.expect("no http.tls");
    assert_eq!(tls.cert, PathBuf::from("/etc/hotline/web.pem"));
    assert_eq!(tls.key, PathBuf::from("/etc/hotline/web.key"));
    assert!(Config::parse("").unwrap().http.tls.is_none());
    let err = Config::parse("http:\n  tls: { cert: a.pem }\n").unwrap_err();
    assert!(err.contains("missing field `key`"), "{err}");
}

#[test]
fn unknown_key_is_refused_with_its_position() {
    let err = Config::parse("sip:\n  listne: 127.0.0.1:5060\n").unwrap_err();
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("<config>:2:3: unknown field `listne`"),
        "{err}"
    );
    assert!(first.ends_with("(did you mean `listen`?)"), "{err}");
    let dup = Config::parse("trunks:\n  - {name: a, allow: []}\n  - {name: a, allow: []}\n");
    assert_eq!(
        dup.unwrap_err(),
        "<config>: trunks: the name 'a' is used twice"
    );
}

#[test]
fn durations_and_ranges() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("5 parsecs").is_err());
    assert_eq!(
        "20000-20099".parse::<PortRange>().unwrap(),
        PortRange {
            low: 20000,
            high: 20099
        }
    );
    assert!("9-3".parse::<PortRange>().is_err());
    assert!("10.0.0.0/33".parse::<IpNet>().is_err());
}

#[test]
fn agents_can_live_in_a_file_of_their_own_and_its_mistakes_are_placed_there() {
    let dir = std::env::temp_dir().join(format!("hotline-agents-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let main = dir.join("hotline.yaml");
    std::fs::write(
        &main,
        "queues: { sales: {} }\nagents:\n  - { id: '1001', password: a, queues: [sales] }\nagents-file: team.yaml\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("team.yaml"),
        "- id: '2001'\n  password: b\n  queues: [sales]\n",
    )
    .unwrap();
    let c = Config::load(&main).unwrap();
    let ids: Vec<&str> = c.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["1001", "2001"]);
    // The roster's own mistakes name the roster; its agents are checked
    // like any other.
    std::fs::write(dir.join("team.yaml"), "- id: '2001'\n  pasword: b\n").unwrap();
    let err = Config::load(&main).unwrap_err().to_string();
    assert!(
        err.contains("team.yaml:2:3: unknown field `pasword`"),
        "{err}"
    );
    std::fs::write(dir.join("team.yaml"), "- { id: '1001', password: b }\n").unwrap();
    let err = Config::load(&main).unwrap_err().to_string();
    assert!(err.contains("the id '1001' is used twice"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_trunks_dial_plan_is_read_and_a_bad_pattern_refused() {
    let c = Config::parse(
        "trunks:\n  - name: carrier\n    allow: [192.0.2.0/24]\n    dial-plan: { country-code: '1', national-prefix: '1', allow: ['+1NXXNXXXXXX'], deny: ['+1900.'] }\n",
    )
    .unwrap();
    assert_eq!(
        c.trunks[0].dial_plan.check("202 555 0100").as_deref(),
        Ok("+12025550100")
    );
    let err = Config::parse(
        "trunks:\n  - name: carrier\n    allow: [192.0.2.0/24]\n    dial-plan: { allow: ['+1[5-'] }\n",
    )
    .unwrap_err();
    assert!(err.contains("trunks: carrier: dial-plan: `+1[5-`"), "{err}");
}
