//! Where the SIP core sends: trunk proxies and dialogs' next hops located
//! by DNS (RFC 3263) off the core's task, failing over to a host's next
//! address, and TLS connections of ours opened on demand.

use super::*;

/// Locates a trunk's proxy (RFC 3263) for its REGISTERs and OPTIONS, and
/// again when the answer's TTL runs out (at least a minute apart); a name
/// that does not resolve is logged, counted and tried again every
/// `retry`, and callbacks over the trunk wait meanwhile.
pub(super) async fn locate_trunk(
    trunk: String,
    proxy: String,
    resolver: crate::sip::dns::Resolver,
    unresolved: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    retry: std::time::Duration,
    commands: mpsc::Sender<Command>,
) {
    let mut last = None;
    loop {
        let wait = match resolver.locate(&proxy).await {
            Ok(located) => {
                if let Ok(mut set) = unresolved.lock() {
                    set.remove(&trunk);
                }
                let Some(&addr) = located.addrs.first() else {
                    tokio::time::sleep(retry).await;
                    continue;
                };
                if last != Some(addr) {
                    info!(%trunk, %proxy, %addr, alternates = located.addrs.len() - 1, "trunk proxy located");
                    last = Some(addr);
                    let cmd = Command::TrunkLocated {
                        trunk: trunk.clone(),
                        proxy: proxy.clone(),
                        addr,
                    };
                    if commands.send(cmd).await.is_err() {
                        return;
                    }
                }
                let ttl = located
                    .valid_until
                    .saturating_duration_since(std::time::Instant::now());
                ttl.clamp(
                    std::time::Duration::from_secs(60),
                    std::time::Duration::from_secs(3600),
                )
            }
            Err(e) => {
                warn!(%trunk, %proxy, error = %e, "cannot resolve the trunk's proxy; callbacks over it wait");
                metrics::counter!("hotline_dns_failures_total", "what" => "trunk").increment(1);
                if let Ok(mut set) = unresolved.lock() {
                    set.insert(trunk.clone());
                }
                retry
            }
        };
        tokio::time::sleep(wait).await;
        if commands.is_closed() {
            return;
        }
    }
}

impl SipCore {
    /// Opens a TLS connection to `addr` (a trunk's proxy, a TLS URI's
    /// host) and sends `bytes` once it is up; what else comes meanwhile
    /// waits with it.
    pub(super) fn send_tls(&mut self, addr: SocketAddr, bytes: Arc<[u8]>) {
        if let Some(queue) = self.connecting.get_mut(&addr) {
            if queue.len() < 64 {
                queue.push(bytes);
            }
            return;
        }
        let Some(domain) = self.tls_peers.get(&addr).cloned() else {
            debug!(to = %addr, "no TLS connection; message dropped");
            return;
        };
        let Some(name) = crate::tls::server_name(&domain) else {
            warn!(to = %addr, %domain, "not a name a certificate can carry; message dropped");
            return;
        };
        let connector = match self.tls_clients.get(&domain) {
            Some(c) => c.clone(),
            None => match crate::tls::client_config(None) {
                Ok(config) => {
                    let c = crate::tls::connector(config);
                    self.tls_clients.insert(domain.clone(), c.clone());
                    c
                }
                Err(e) => {
                    warn!(%domain, error = %e, "no TLS client configuration; message dropped");
                    return;
                }
            },
        };
        debug!(to = %addr, %domain, "opening a TLS connection");
        self.connecting.insert(addr, vec![bytes]);
        tokio::spawn(transport::connect_tls(
            addr,
            name,
            connector,
            self.inbound_tx.clone(),
            self.config.sip.connections,
            self.config.sip.max_message_size,
        ));
    }

    /// When a dialog's next hop names a host, locates it off the core's
    /// task; until then in-dialog requests go where the dialog's requests
    /// came from (or went to).
    pub(super) fn locate_next_hop(&self, id: DialogId) {
        let Some(uri) = self
            .dialogs
            .get(&id)
            .and_then(|s| s.dialog.next_hop_needs_dns())
        else {
            return;
        };
        let (resolver, commands) = (self.resolver.clone(), self.cmd_tx.clone());
        tokio::spawn(async move {
            match resolver.locate(&uri).await {
                Ok(l) => {
                    let Some(&addr) = l.addrs.first() else {
                        return;
                    };
                    let _ = commands
                        .send(Command::HopLocated {
                            dialog: id,
                            uri,
                            addr,
                        })
                        .await;
                }
                Err(e) => {
                    warn!(%uri, error = %e, "cannot locate a dialog's next hop; its requests go where it came from");
                    metrics::counter!("hotline_dns_failures_total", "what" => "dialog")
                        .increment(1);
                }
            }
        });
    }

    /// A trunk's proxy has this address (now): its client sends there.
    pub(super) fn trunk_located(&mut self, trunk: &str, proxy: &str, addr: SocketAddr) {
        let outbound = self
            .config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .and_then(|t| t.outbound.as_ref());
        if outbound.is_none_or(|o| o.proxy != proxy) {
            return; // the trunk was removed or moved by a reload since
        }
        let tls_domain = outbound
            .and_then(|o| SipUri::parse(&o.proxy))
            .filter(crate::sip::trunk_client::wants_tls)
            .map(|u| u.host);
        if let Some(domain) = tls_domain {
            self.tls_peers.insert(addr, domain);
        }
        if let Some(c) = self.trunk_clients.iter_mut().find(|c| c.trunk == trunk) {
            c.proxy = addr;
            return;
        }
        let Some(cfg) = self.config.trunks.iter().find(|t| t.name == trunk) else {
            return;
        };
        let call_id = format!("{}@{}", random_token(20), self.locals.pick(addr.ip()).ip());
        if let Some(c) = TrunkClient::new(cfg, addr, call_id, random_token(10), now()) {
            self.trunk_clients.push(c);
        }
    }

    /// Our INVITE heard nothing, or `503`, from where it went: sends it
    /// to the host's next address (RFC 3263 §4.3), if there is one.
    pub(super) fn fail_over(&mut self, id: DialogId, old_tx: TxId) -> bool {
        let after = self.config.dns.failover_after;
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return false;
        };
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return false;
        };
        if slot.dialog.state != DialogState::Early || out.cancelled || out.alternates.is_empty() {
            return false;
        }
        let next = out.alternates.remove(0);
        out.failover_at = (!out.alternates.is_empty()).then(|| now() + after);
        info!(call_id = %slot.dialog.call_id, from = %slot.dialog.source.addr, to = %next, "no answer from this address; trying the next one");
        metrics::counter!("hotline_sip_failovers_total").increment(1);
        slot.dialog.source = Target {
            transport: slot.dialog.source.transport,
            addr: next,
        };
        self.txs.abandon(old_tx);
        self.resend_invite(id, old_tx, Vec::new())
    }

    /// INVITEs that heard nothing by their failover time.
    pub(super) fn failovers(&mut self, t: Instant) {
        let due: Vec<(DialogId, TxId)> = self
            .dialogs
            .iter()
            .filter(|(_, s)| s.dialog.state == DialogState::Early)
            .filter_map(|(id, s)| {
                let out = s.dialog.outbound.as_ref()?;
                out.failover_at
                    .is_some_and(|at| at <= t)
                    .then_some((*id, out.invite_tx))
            })
            .collect();
        for (id, tx) in due {
            self.fail_over(id, tx);
        }
    }
}
