//! Locating SIP servers (RFC 3263): a SIP URI's host name becomes an
//! ordered list of addresses to try, by NAPTR, then SRV, then A/AAAA.
//! The choices (which NAPTR records, the SRV order of RFC 2782) are pure
//! functions; [`Resolver`] asks DNS through hickory-resolver, whose cache
//! honours each record's TTL.
//!
//! A `sips:` URI (or one with `transport=tls`) is located for TLS
//! (`SIPS+D2T`, `_sips._tcp`, port 5061), any other for UDP: the engine
//! opens no outbound plain TCP connections (it reaches phones over the
//! connections they opened), so `SIP+D2T` records are skipped.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::Rng;

use crate::uri::SipUri;

/// A NAPTR record as RFC 3263 reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub service: String,
    pub replacement: String,
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The SRV names to look up, best first, from a domain's NAPTR records
/// (RFC 3263 §4.1): `s`-flagged records of the service we use (`SIP+D2U`,
/// or `SIPS+D2T` for TLS), by order then preference.
pub fn srv_names_of(naptrs: &[Naptr], service: &str) -> Vec<String> {
    let mut usable: Vec<&Naptr> = naptrs
        .iter()
        .filter(|n| n.flags.eq_ignore_ascii_case("s"))
        .filter(|n| n.service.eq_ignore_ascii_case(service))
        .filter(|n| !n.replacement.is_empty() && n.replacement != ".")
        .collect();
    usable.sort_by_key(|n| (n.order, n.preference));
    usable.iter().map(|n| n.replacement.clone()).collect()
}

/// SRV records in the order to try them (RFC 2782): by priority, and
/// within one priority at random in proportion to weight. `pick(total)`
/// returns a number in `0..=total` (random in use, fixed in tests).
pub fn srv_order(records: &[Srv], mut pick: impl FnMut(u32) -> u32) -> Vec<Srv> {
    let mut priorities: Vec<u16> = records.iter().map(|r| r.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut out = Vec::with_capacity(records.len());
    for p in priorities {
        // Zero weights first, as RFC 2782 asks, then draw.
        let mut group: Vec<&Srv> = records.iter().filter(|r| r.priority == p).collect();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let r = pick(total).min(total);
            let mut sum = 0;
            let i = group
                .iter()
                .position(|s| {
                    sum += u32::from(s.weight);
                    sum >= r
                })
                .unwrap_or(0);
            out.push(group.remove(i).clone());
        }
    }
    out
}

/// Where a URI's requests go, best first, and until when that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub addrs: Vec<SocketAddr>,
    pub valid_until: Instant,
    /// UDP, or TLS for a `sips:` URI or one with `transport=tls`.
    pub transport: super::Transport,
}

/// Why a URI's host could not be located.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LocateError {
    #[error("`{0}` is not a SIP URI")]
    BadUri(String),
    #[error("{host} does not resolve: {reason}")]
    NoAddress { host: String, reason: String },
}

/// How long an IP literal (or a name from the hosts file) holds.
const LITERAL_TTL: Duration = Duration::from_secs(3600);

/// Resolves SIP URIs (RFC 3263); cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    /// `None` when no resolver could be built: names do not resolve.
    inner: Option<Arc<TokioResolver>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// Asks `servers` (`dns.servers`: `IP` or `IP:PORT`), or the system's
    /// (`/etc/resolv.conf`) when there are none.
    /// Without a usable system configuration only IP literals resolve
    /// (logged once here).
    /// A name found not to exist is believed for at most `negative_max`
    /// (`dns.retry`), so a retry really asks again.
    pub fn new(servers: &[SocketAddr], negative_max: Duration) -> Resolver {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            match TokioResolver::builder(provider.clone()) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "no usable system DNS configuration; set dns.servers to resolve host names");
                    TokioResolver::builder_with_config(ResolverConfig::default(), provider)
                }
            }
        } else {
            let mut config = ResolverConfig::default();
            for s in servers {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                config.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.negative_max_ttl = Some(negative_max);
        let inner = match builder.build() {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                // Only IP literals resolve then: every name fails, and
                // says so where it is used.
                tracing::warn!(error = %e, "cannot build the DNS resolver; only IP addresses resolve");
                None
            }
        };
        Resolver { inner }
    }

    /// The addresses to send a URI's requests to, best first (RFC 3263
    /// §4): an IP literal as it is; a name with a port by A/AAAA; a name
    /// without one by NAPTR, then SRV (`_sip._udp`), then A/AAAA on 5060.
    pub async fn locate(&self, uri: &str) -> Result<Located, LocateError> {
        let parsed = SipUri::parse(uri).ok_or_else(|| LocateError::BadUri(uri.to_owned()))?;
        let host = parsed.host.trim_matches(['[', ']']).to_owned();
        let tls = super::trunk_client::wants_tls(&parsed);
        let transport = if tls {
            super::Transport::Tls
        } else {
            super::Transport::Udp
        };
        let default_port = if tls { 5061 } else { 5060 };
        let (service, srv_prefix) = if tls {
            ("SIPS+D2T", "_sips._tcp")
        } else {
            ("SIP+D2U", "_sip._udp")
        };
        let now = Instant::now();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Located {
                addrs: vec![SocketAddr::new(ip, parsed.port.unwrap_or(default_port))],
                valid_until: now + LITERAL_TTL,
                transport,
            });
        }
        let fqdn = if host.ends_with('.') {
            host.clone()
        } else {
            format!("{host}.")
        };
        if let Some(port) = parsed.port {
            return self.addresses(&fqdn, port, &host, transport).await;
        }
        let mut valid_until = now + LITERAL_TTL;
        let mut srv_names = Vec::new();
        let Some(inner) = self.inner.as_ref() else {
            return Err(LocateError::NoAddress {
                host,
                reason: "no DNS resolver".into(),
            });
        };
        if let Ok(found) = inner.lookup(fqdn.as_str(), RecordType::NAPTR).await {
            valid_until = valid_until.min(found.valid_until());
            let naptrs: Vec<Naptr> = found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        service: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_ascii(),
                    }),
                    _ => None,
                })
                .collect();
            srv_names = srv_names_of(&naptrs, service);
        }
        if srv_names.is_empty() {
            srv_names.push(format!("{srv_prefix}.{fqdn}"));
        }
        let mut addrs = Vec::new();
        for name in srv_names {
            let Ok(found) = inner.lookup(name.as_str(), RecordType::SRV).await else {
                continue;
            };
            valid_until = valid_until.min(found.valid_until());
            let srvs: Vec<Srv> = found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_ascii(),
                    }),
                    _ => None,
                })
                .collect();
            let ordered = {
                let mut rng = rand::rng();
                srv_order(&srvs, |total| rng.random_range(0..=total))
            };
            for srv in ordered {
                // "." means the service is not offered there.
                if srv.target == "." {
                    continue;
                }
                if let Ok(l) = self
                    .addresses(&srv.target, srv.port, &host, transport)
                    .await
                {
                    valid_until = valid_until.min(l.valid_until);
                    for a in l.addrs {
                        if !addrs.contains(&a) {
                            addrs.push(a);
                        }
                    }
                }
            }
            if !addrs.is_empty() {
                return Ok(Located {
                    addrs,
                    valid_until,
                    transport,
                });
            }
        }
        self.addresses(&fqdn, default_port, &host, transport).await
    }

    /// A/AAAA of `name`, each with `port`.
    async fn addresses(
        &self,
        name: &str,
        port: u16,
        host: &str,
        transport: super::Transport,
    ) -> Result<Located, LocateError> {
        let Some(inner) = self.inner.as_ref() else {
            return Err(LocateError::NoAddress {
                host: host.to_owned(),
                reason: "no DNS resolver".into(),
            });
        };
        let found = inner
            .lookup_ip(name)
            .await
            .map_err(|e| LocateError::NoAddress {
                host: host.to_owned(),
                reason: e.to_string(),
            })?;
        let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(LocateError::NoAddress {
                host: host.to_owned(),
                reason: "no address".into(),
            });
        }
        Ok(Located {
            addrs,
            valid_until: found.valid_until(),
            transport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naptr(order: u16, pref: u16, service: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: "s".into(),
            service: service.into(),
            replacement: replacement.into(),
        }
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn naptr_records_give_the_udp_srv_names_by_order_and_preference() {
        let records = [
            naptr(20, 10, "SIP+D2U", "_sip._udp.backup.example."),
            naptr(10, 20, "SIP+D2U", "_sip._udp.second.example."),
            naptr(10, 10, "SIPS+D2T", "_sips._tcp.example."),
            naptr(10, 10, "SIP+D2T", "_sip._tcp.example."),
            naptr(10, 5, "SIP+D2U", "_sip._udp.first.example."),
            Naptr {
                flags: "u".into(),
                ..naptr(1, 1, "SIP+D2U", "_sip._udp.regexp.example.")
            },
        ];
        assert_eq!(
            srv_names_of(&records, "SIP+D2U"),
            [
                "_sip._udp.first.example.",
                "_sip._udp.second.example.",
                "_sip._udp.backup.example."
            ]
        );
        assert_eq!(srv_names_of(&records, "SIPS+D2T"), ["_sips._tcp.example."]);
        assert!(srv_names_of(&[], "SIP+D2U").is_empty());
    }

    #[test]
    fn srv_records_go_by_priority_then_weight() {
        let records = [
            srv(20, 0, "backup."),
            srv(10, 60, "big."),
            srv(10, 0, "zero."),
            srv(10, 40, "small."),
        ];
        let names = |order: Vec<Srv>| order.into_iter().map(|s| s.target).collect::<Vec<_>>();
        // The draw always 0: zero weights first, then the first listed.
        assert_eq!(
            names(srv_order(&records, |_| 0)),
            ["zero.", "big.", "small.", "backup."]
        );
        // The draw at the top: the last of the running sums.
        assert_eq!(
            names(srv_order(&records, |total| total)),
            ["small.", "big.", "zero.", "backup."]
        );
        // Over many random draws the heavier one comes first more often,
        // about 60 % of the time.
        let mut rng = rand::rng();
        let first_big = (0..2000)
            .filter(|_| {
                srv_order(
                    &records[1..2]
                        .iter()
                        .chain(&records[3..])
                        .cloned()
                        .collect::<Vec<_>>(),
                    |t| rng.random_range(0..=t),
                )[0]
                .target
                    == "big."
            })
            .count();
        assert!((1050..1350).contains(&first_big), "{first_big} of 2000");
    }

    #[tokio::test]
    async fn ip_literals_need_no_dns() {
        // A resolver pointed at a server that does not exist: never asked.
        let r = Resolver::new(&["127.0.0.1:9".parse().unwrap()], Duration::from_secs(30));
        let l = r.locate("sip:+15551234567@192.0.2.7:5080").await.unwrap();
        assert_eq!(l.addrs, ["192.0.2.7:5080".parse::<SocketAddr>().unwrap()]);
        let l = r.locate("sip:[2001:db8::1]").await.unwrap();
        assert_eq!(
            l.addrs,
            ["[2001:db8::1]:5060".parse::<SocketAddr>().unwrap()]
        );
        let l = r.locate("sips:192.0.2.7").await.unwrap();
        assert_eq!(l.addrs, ["192.0.2.7:5061".parse::<SocketAddr>().unwrap()]);
        assert_eq!(l.transport, crate::sip::Transport::Tls);
        let l = r.locate("sip:192.0.2.7;transport=tls").await.unwrap();
        assert_eq!(l.transport, crate::sip::Transport::Tls);
        assert!(matches!(
            r.locate("mailto:x").await,
            Err(LocateError::BadUri(_))
        ));
    }
}
