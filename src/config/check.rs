//! The configuration's checks across keys: what `hotline validate` and a
//! reload refuse, in words that name the key.

use super::{CallbackConfig, Config, DispositionRule, SessionTimerConfig};

impl Config {
    pub(super) fn check(&self) -> Result<(), String> {
        self.dns.server_addrs()?;
        if let Some(w) = &self.webrtc {
            w.check()?;
        }
        self.desktop.check()?;
        if self.dns.retry.is_zero() {
            return Err("dns: retry must be more than 0s".into());
        }
        let timer = &self.calls.session_timer;
        if timer.min_se < SessionTimerConfig::MIN_SE_FLOOR {
            return Err("calls: session-timer: min-se must be at least 90s (RFC 4028)".into());
        }
        if !timer.expires.is_zero() && timer.expires < timer.min_se {
            return Err(
                "calls: session-timer: expires must be at least min-se (or 0 for no timer of ours)"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for trunk in &self.trunks {
            if !names.insert(trunk.name.as_str()) {
                return Err(format!("trunks: the name '{}' is used twice", trunk.name));
            }
            if let Some(p) = trunk.dial_plan.problems().first() {
                return Err(format!("trunks: {}: dial-plan: {p}", trunk.name));
            }
        }
        for trunk in &self.trunks {
            if let Some(o) = &trunk.outbound {
                let ok = crate::uri::SipUri::parse(&o.proxy)
                    .is_some_and(|u| u.scheme.eq_ignore_ascii_case("sip"));
                if !ok {
                    return Err(format!(
                        "trunks: {}: outbound.proxy: `{}` is not a SIP URI (sip:HOST[:PORT])",
                        trunk.name, o.proxy
                    ));
                }
                if o.password.is_some() != o.username.is_some() {
                    return Err(format!(
                        "trunks: {}: outbound: give both username and password, or neither",
                        trunk.name
                    ));
                }
                if o.register && o.username.is_none() {
                    return Err(format!(
                        "trunks: {}: outbound.register needs a username and password",
                        trunk.name
                    ));
                }
            }
        }
        for (name, q) in &self.queues {
            if let Some(cb) = &q.callback {
                self.check_callback(name, cb)?;
            }
            let mut codes = std::collections::HashSet::new();
            for d in &q.dispositions {
                if d.code.trim().is_empty() {
                    return Err(format!("queues.{name}.dispositions: a code is empty"));
                }
                if !codes.insert(d.code.as_str()) {
                    return Err(format!(
                        "queues.{name}.dispositions: the code `{}` is given twice",
                        d.code
                    ));
                }
            }
            if q.disposition == DispositionRule::Required && q.dispositions.is_empty() {
                return Err(format!(
                    "queues.{name}.disposition: required, but the queue has no dispositions"
                ));
            }
        }
        for origin in &self.http.origins {
            let ok = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@']));
            if !ok {
                return Err(format!(
                    "http.origins: `{origin}` is not an origin (http://HOST[:PORT] or https://HOST[:PORT], no path)"
                ));
            }
        }
        for host in &self.http.hosts {
            if host.is_empty() || host.contains(['/', ':', '@', ' ']) {
                return Err(format!(
                    "http.hosts: `{host}` is not a host name (a name such as wallboard.example.com, without port)"
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for a in &self.agents {
            if a.id.is_empty()
                || !a
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "agents: `{}` is not a SIP user name (letters, digits, - _ .)",
                    a.id
                ));
            }
            if !ids.insert(a.id.as_str()) {
                return Err(format!("agents: the id '{}' is used twice", a.id));
            }
            if a.password.is_none() && a.ha1.is_none() && a.ha1_sha256.is_none() {
                return Err(format!(
                    "agents: {} needs a password, ha1 or ha1-sha256",
                    a.id
                ));
            }
            for q in &a.queues {
                if !self.queues.contains_key(q) {
                    return Err(format!(
                        "agents: {} is in the queue `{q}`, which is not under `queues:`",
                        a.id
                    ));
                }
            }
            if let Some(s) = &a.shift {
                if !self.schedules.contains_key(s) {
                    return Err(format!(
                        "agents: {} works the shift `{s}`, which is not under `schedules:`",
                        a.id
                    ));
                }
            }
            if let Some(tz) = &a.time_zone {
                if jiff::tz::TimeZone::get(tz).is_err() {
                    return Err(format!("agents: {}: `{tz}` is not an IANA time zone", a.id));
                }
            }
        }
        let urls =
            self.queues
                .iter()
                .filter_map(|(n, q)| {
                    Some((
                        format!("queues.{n}.screen-pop-url"),
                        q.screen_pop_url.as_ref()?,
                    ))
                })
                .chain(self.queues.iter().filter_map(|(n, q)| {
                    Some((format!("queues.{n}.crm-url"), q.crm_url.as_ref()?))
                }))
                .chain(
                    self.calls
                        .end_webhook
                        .iter()
                        .map(|u| ("calls.end-webhook".to_owned(), u)),
                );
        for (key, url) in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{key}: `{url}` is not an http:// or https:// URL"));
            }
        }
        for alg in &self.registrar.algorithms {
            if !matches!(alg.to_ascii_uppercase().as_str(), "MD5" | "SHA-256") {
                return Err(format!(
                    "registrar.algorithms: `{alg}` is not MD5 or SHA-256"
                ));
            }
        }
        if self.registrar.algorithms.is_empty() {
            return Err("registrar.algorithms: give at least one of SHA-256, MD5".into());
        }
        Ok(())
    }

    fn check_callback(&self, queue: &str, cb: &CallbackConfig) -> Result<(), String> {
        let key = format!("queues.{queue}.callback");
        match self.trunks.iter().find(|t| t.name == cb.trunk) {
            None if cb.trunk.is_empty() => {
                return Err(format!(
                    "{key}: give the `trunk` callbacks are dialled over"
                ))
            }
            None => {
                return Err(format!(
                    "{key}.trunk: `{}` is not under `trunks:`",
                    cb.trunk
                ))
            }
            Some(t) if t.outbound.is_none() => {
                return Err(format!(
                    "{key}.trunk: the trunk `{}` has no `outbound:` settings",
                    cb.trunk
                ))
            }
            Some(_) => {}
        }
        if cb.offer_after.is_none() && cb.when_wait_over.is_none() {
            return Err(format!(
                "{key}: give `offer-after` (a wait) or `when-wait-over` (an estimated wait)"
            ));
        }
        let mut k = cb.key.chars();
        match (k.next(), k.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => {}
            _ => {
                return Err(format!(
                    "{key}.key: `{}` is not one key (0-9, *, #)",
                    cb.key
                ))
            }
        }
        if cb.max_attempts == 0 {
            return Err(format!("{key}.max-attempts: must be at least 1"));
        }
        if let Some(s) = &cb.schedule {
            if !self.schedules.contains_key(s) {
                return Err(format!("{key}.schedule: `{s}` is not under `schedules:`"));
            }
        }
        Ok(())
    }
}
