//! The SIP core's trunk side: each outbound trunk's client (REGISTER and
//! OPTIONS to its proxy, located by DNS), and a new version of the config
//! taken while calls go on.

use super::*;

impl SipCore {
    /// Sends the trunk clients' due REGISTERs and OPTIONS.
    pub(super) fn trunk_requests(&mut self, t: Instant) {
        let ua = self.config.sip.user_agent.clone();
        for i in 0..self.trunk_clients.len() {
            let transport = self.trunk_clients[i].transport;
            let local = self.local_for(transport, self.trunk_clients[i].proxy.ip());
            let due = self.trunk_clients[i].due(t, local, &ua, || new_via(local, transport));
            let (trunk, proxy) = (
                self.trunk_clients[i].trunk.clone(),
                self.trunk_clients[i].proxy,
            );
            for (kind, req, branch) in due {
                self.send_trunk_request(&trunk, transport, kind, req, &branch, proxy, t);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_trunk_request(
        &mut self,
        trunk: &str,
        transport: Transport,
        kind: TrunkKind,
        req: Request,
        branch: &str,
        proxy: SocketAddr,
        t: Instant,
    ) {
        let target = Target {
            transport,
            addr: proxy,
        };
        let (tx, transmit) = self.txs.send_request(branch, &req, target, t);
        self.trunk_txs.insert(tx, (trunk.to_owned(), kind, req));
        self.out.push(transmit);
    }

    /// A trunk client's request was answered (`None`: never).
    pub(super) fn on_trunk_response(&mut self, tx: TxId, resp: Option<&Response>) {
        let Some((trunk, kind, sent)) = self.trunk_txs.remove(&tx) else {
            return;
        };
        let t = now();
        // Gone if a reload removed or changed the trunk since.
        let Some(i) = self.trunk_clients.iter().position(|c| c.trunk == trunk) else {
            return;
        };
        let (transport, proxy) = (self.trunk_clients[i].transport, self.trunk_clients[i].proxy);
        let local = self.local_for(transport, proxy.ip());
        let client = &mut self.trunk_clients[i];
        match (kind, resp) {
            (TrunkKind::Options, answer) => client.on_options(answer.is_some()),
            (TrunkKind::Register, None) => client.on_register_timeout(t),
            (TrunkKind::Register, Some(resp)) => {
                if let Some((again, branch)) =
                    client.on_register_response(resp, &sent, t, new_via(local, transport))
                {
                    self.send_trunk_request(
                        &trunk,
                        transport,
                        TrunkKind::Register,
                        again,
                        &branch,
                        proxy,
                        t,
                    );
                }
            }
        }
    }

    /// Starts locating a trunk's proxy (none: it places no calls).
    pub(super) fn locate(&mut self, trunk: &crate::config::Trunk) {
        let Some(o) = &trunk.outbound else {
            return;
        };
        let task = tokio::spawn(locate_trunk(
            trunk.name.clone(),
            o.proxy.clone(),
            self.resolver.clone(),
            self.unresolved.clone(),
            self.config.dns.retry,
            self.cmd_tx.clone(),
        ));
        if let Some(old) = self
            .locators
            .insert(trunk.name.clone(), task.abort_handle())
        {
            old.abort();
        }
    }

    /// A new version of the config. Agents' secrets and the rate limit are
    /// taken at once; an agent removed loses its contacts (its call in
    /// progress goes on). A trunk removed, or whose `outbound` changed,
    /// stops registering and being pinged; a new or changed one is located
    /// and starts. Trunks' `allow` lists and caps are read per request, so
    /// a source removed is refused from its next new call while its calls
    /// in progress go on. Dialogs are untouched.
    pub(super) fn reconfigure(&mut self, config: Arc<Config>) {
        let old = std::mem::replace(&mut self.config, config.clone());
        for agent in self
            .registrar
            .reconfigure(&config.registrar, &config.agents)
        {
            info!(%agent, "agent no longer in the config: its registrations end");
            self.publish(&agent);
        }
        if old.sip.rate_limit != config.sip.rate_limit {
            let r = &config.sip.rate_limit;
            self.sources = crate::sip::limits::SourceLimit::new(r.requests, r.per, r.block);
        }
        let outbound_of = |c: &Config, name: &str| {
            c.trunks
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.outbound.clone())
        };
        for trunk in &old.trunks {
            if trunk.outbound.is_some() && outbound_of(&config, &trunk.name) != trunk.outbound {
                info!(trunk = %trunk.name, "trunk's outbound removed or changed: its client stops");
                if let Some(task) = self.locators.remove(&trunk.name) {
                    task.abort();
                }
                self.trunk_clients.retain(|c| c.trunk != trunk.name);
                self.trunk_txs.retain(|_, (t, _, _)| *t != trunk.name);
                if let Ok(mut set) = self.unresolved.lock() {
                    set.remove(&trunk.name);
                }
            }
        }
        for trunk in &config.trunks {
            let Some(o) = &trunk.outbound else {
                continue;
            };
            if outbound_of(&old, &trunk.name).as_ref() == Some(o) {
                continue;
            }
            if let Some(uri) = SipUri::parse(&o.proxy).filter(crate::sip::trunk_client::wants_tls) {
                match crate::tls::client_config(o.ca_file.as_deref()) {
                    Ok(c) => {
                        self.tls_clients
                            .insert(uri.host.clone(), crate::tls::connector(c));
                    }
                    Err(e) => {
                        warn!(trunk = %trunk.name, error = %e, "trunk's TLS settings not usable; its TLS connections keep the old ones");
                    }
                }
            }
            info!(trunk = %trunk.name, proxy = %o.proxy, "trunk added or changed: locating its proxy");
            self.locate(trunk);
        }
    }
}
