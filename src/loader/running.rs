//! The version new calls take: the engine config and the flows, published
//! together so a call never starts with a config of one version and flows
//! of another. Calls in progress keep the version they started with; the
//! SIP core, the ACD, the callback service and the API follow the latest.
//!
//! Some settings are read once, when the engine starts (the sockets it
//! listens on, the RTP port range, the data directory): a reload keeps
//! their running values and reports each one the file changed as needing a
//! restart ([`restart_only`], [`keep_running`]).

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::flow::FlowSet;

/// One version of what the engine runs on.
#[derive(Debug)]
pub struct Running {
    pub config: Arc<Config>,
    pub flows: Arc<FlowSet>,
}

impl Running {
    /// The version number (the flows', counted across every reload).
    pub fn version(&self) -> u64 {
        self.flows.version
    }
}

/// The latest version, for whoever follows it.
pub type Live = watch::Receiver<Arc<Running>>;

/// Calls `$each!(name, field.path)` for every setting that only a restart
/// applies.
macro_rules! restart_only_settings {
    ($each:ident) => {
        $each!("sip.listen", sip.listen);
        $each!("sip.advertise", sip.advertise);
        $each!("sip.udp", sip.udp);
        $each!("sip.tcp", sip.tcp);
        $each!("sip.tls", sip.tls);
        $each!("sip.connections", sip.connections);
        $each!("sip.max-message-size", sip.max_message_size);
        $each!("http.listen", http.listen);
        $each!("http.connections", http.connections);
        $each!("http.tls", http.tls);
        $each!("rtp", rtp);
        $each!("webrtc", webrtc);
        $each!("calls.media-timeout", calls.media_timeout);
        $each!("data-dir", data_dir);
        $each!("sounds-dir", sounds_dir);
        $each!("flows-dir", flows_dir);
        $each!("dns", dns);
        $each!("log", log);
    };
}

/// The settings a restart would change: those that differ between the
/// file as the engine started from it and the file now.
pub fn restart_only(started: &Config, file: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! differs {
        ($name:literal, $($f:ident).+) => {
            if started.$($f).+ != file.$($f).+ {
                changed.push($name);
            }
        };
    }
    restart_only_settings!(differs);
    changed
}

/// `file` with the running values of the settings only a restart changes
/// (including those the command line overrode).
pub fn keep_running(mut file: Config, running: &Config) -> Config {
    macro_rules! keep {
        ($name:literal, $($f:ident).+) => {
            file.$($f).+ = running.$($f).+.clone();
        };
    }
    restart_only_settings!(keep);
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn live_settings_change_and_restart_only_ones_are_named_and_kept() {
        let started = parse(
            "
sip: { listen: 127.0.0.1:5060 }
rtp: { ports: 20000-20100 }
queues: { sales: {} }
agents: [{ id: a1, password: x, queues: [sales] }]
",
        );
        // The command line moved the running engine's SIP port.
        let mut running = started.clone();
        running.sip.listen =
            crate::config::PerFamily::new(vec!["127.0.0.1:5999".parse().unwrap()]).unwrap();
        let same = parse(
            "
sip: { listen: 127.0.0.1:5060 }
rtp: { ports: 20000-20100 }
queues: { sales: {}, support: {} }
agents: [{ id: a1, password: x, queues: [sales] }, { id: a2, password: y, queues: [support] }]
",
        );
        assert!(
            restart_only(&started, &same).is_empty(),
            "only live settings changed"
        );
        let applied = keep_running(same.clone(), &running);
        assert_eq!(applied.queues.len(), 2, "the new queue applies");
        assert_eq!(applied.agents.len(), 2, "the new agent applies");
        assert_eq!(
            applied.sip.listen, running.sip.listen,
            "the port the command line chose stays"
        );

        let moved = parse(
            "
sip: { listen: 127.0.0.1:5070 }
rtp: { ports: 30000-30100 }
data-dir: elsewhere
",
        );
        assert_eq!(
            restart_only(&started, &moved),
            vec!["sip.listen", "rtp", "data-dir"]
        );
        let applied = keep_running(moved, &running);
        assert_eq!(applied.rtp, running.rtp);
        assert_eq!(applied.data_dir, running.data_dir);
        assert!(applied.queues.is_empty(), "the queues removed are removed");
    }
}
