//! The SIP core's calling side: an INVITE placed for a call, its
//! provisional and final answers, a digest challenge answered, and its
//! CANCEL.

use super::*;

impl SipCore {
    /// Places a call: the INVITE on a client transaction, a UAC dialog.
    pub(super) fn send_invite(
        &mut self,
        id: DialogId,
        call: OutboundCall,
        mut addrs: Vec<SocketAddr>,
        tls_domain: Option<String>,
        events: mpsc::Sender<DialogEvent>,
    ) {
        if let Some(domain) = &tls_domain {
            for a in &addrs {
                self.tls_peers.insert(*a, domain.clone());
            }
        }
        if addrs.is_empty() {
            deliver(&events, DialogEvent::Rejected { status: 400 });
            return;
        }
        let addr = addrs.remove(0);
        // A phone registered over a TCP connection is reached over it,
        // while it is open (RFC 5626 flow reuse); else over UDP.
        let transport = match self.tcp.get(&addr) {
            Some((_, _, t)) if call.over_tcp => *t,
            _ if tls_domain.is_some() => Transport::Tls,
            _ => Transport::Udp,
        };
        let local = pick_local(&self.locals, self.tls_local, transport, addr.ip());
        let (via, branch) = new_via(local, transport);
        let local_tag = random_token(10);
        let call_id = format!("{}@{}", random_token(20), local.ip());
        let host = match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let user: String = call
            .from_user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()".contains(*c))
            .collect();
        let user = if user.is_empty() {
            "hotline".to_owned()
        } else {
            user
        };
        let display: Option<String> = call.from_display.map(|d| {
            d.chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect()
        });
        let from_uri = format!("sip:{user}@{host}");
        let from = match &display {
            Some(d) => format!("\"{d}\" <{from_uri}>;tag={local_tag}"),
            None => format!("<{from_uri}>;tag={local_tag}"),
        };
        let mut headers = Headers::default();
        headers.push("Via", via);
        headers.push("Max-Forwards", "70");
        headers.push("From", from);
        headers.push("To", format!("<{}>", call.target));
        headers.push("Call-ID", call_id.clone());
        headers.push("CSeq", "1 INVITE");
        headers.push("Contact", self.contact(transport, addr.ip()));
        headers.push("User-Agent", self.config.sip.user_agent.clone());
        headers.push("Allow", reply::ALLOW);
        let mut extra: Vec<(String, String)> = call
            .headers
            .iter()
            // Only token names and printable values: these come from callers.
            .filter(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.chars().filter(|c| !c.is_control()).take(256).collect(),
                )
            })
            .collect();
        if transport == Transport::Udp {
            // Within RFC 3261 §18.1.1's size for UDP: the IVR's variables
            // give way (a phone registered over TCP or TLS gets them all).
            let mut probe = Request {
                method: Method::Invite,
                uri: call.target.clone(),
                headers: headers.clone(),
                body: call.sdp.clone(),
            };
            for (k, v) in &extra {
                probe.headers.push(k.clone(), v.clone());
            }
            let size = probe.to_bytes().len() + 120;
            let dropped = crate::sip::identity::fit_for_udp(
                &mut extra,
                size,
                crate::sip::identity::UDP_LIMIT,
            );
            if dropped > 0 {
                warn!(%call_id, dropped, "screen pop variables left out to keep the INVITE within UDP's size");
                metrics::counter!("hotline_sip_screen_pop_trimmed_total").increment(1);
                extra.push(("X-Hotline-Vars-Omitted".to_owned(), dropped.to_string()));
            }
        }
        for (k, v) in extra {
            headers.push(k, v);
        }
        for (k, v) in session_timer::invite_headers(self.timer_settings(), 0) {
            headers.push(k, v);
        }
        headers.push("Content-Type", "application/sdp");
        headers.push("Content-Length", call.sdp.len().to_string());
        let sdp = call.sdp.clone();
        let invite = Request {
            method: Method::Invite,
            uri: call.target.clone(),
            headers,
            body: call.sdp,
        };
        let target = Target { transport, addr };
        let (tx, transmit) = self.txs.send_request(&branch, &invite, target, now());
        let Some(mut dialog) = Dialog::outbound(invite, local_tag.clone(), tx, target) else {
            deliver(&events, DialogEvent::Rejected { status: 400 });
            return;
        };
        if let Some(out) = dialog.outbound.as_mut() {
            out.auth = call.auth;
            if !addrs.is_empty() {
                out.failover_at = Some(now() + self.config.dns.failover_after);
            }
            out.alternates = addrs;
        }
        info!(%call_id, to = %call.target, %addr, "placing a call");
        self.out.push(transmit);
        self.by_invite.insert(tx, id);
        self.by_call.insert((call_id, local_tag), id);
        let mut slot = DialogSlot::new(dialog, events, None);
        slot.local_sdp = Some(sdp);
        self.dialogs.insert(id, slot);
        self.status.dialogs.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn on_invite_provisional(&mut self, id: DialogId, resp: &Response) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return;
        };
        // It is there: no failing over from now on.
        out.failover_at = None;
        if resp.status > 100 && !out.ringing && !out.cancelled {
            out.ringing = true;
            deliver(&slot.events, DialogEvent::Ringing);
        }
    }

    /// The final response to our INVITE: ACK a 2xx (again, if it is
    /// retransmitted) and confirm the dialog; report a failure.
    pub(super) fn on_invite_final(&mut self, id: DialogId, tx: TxId, resp: &Response) {
        if !self.dialogs.contains_key(&id) {
            self.by_invite.remove(&tx);
            return;
        }
        if matches!(resp.status, 401 | 407) && self.resend_with_credentials(id, tx, resp) {
            return;
        }
        if resp.status == 422 && self.resend_with_longer_interval(id, tx, resp) {
            return;
        }
        if resp.status == 503 && self.fail_over(id, tx) {
            return;
        }
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        if !(200..300).contains(&resp.status) {
            self.by_invite.remove(&tx);
            if slot.dialog.state == DialogState::Early {
                info!(call_id = %slot.dialog.call_id, status = resp.status, "our INVITE was refused");
                deliver(
                    &slot.events,
                    DialogEvent::Rejected {
                        status: resp.status,
                    },
                );
                slot.dialog.state = DialogState::Terminated;
                self.forget(id);
            }
            return;
        }
        let target_before = slot.dialog.request_target();
        if let Some(ack) = slot.dialog.outbound.as_ref().and_then(|o| o.ack.clone()) {
            // A retransmitted 2xx: the same ACK again.
            self.out.push(Transmit {
                target: target_before,
                bytes: ack.into(),
            });
            return;
        }
        if slot.dialog.confirm(resp).is_none() {
            warn!(call_id = %slot.dialog.call_id, "unusable 2xx to our INVITE (no To tag or Contact)");
            // Still acknowledged, to the address we sent to, then ended.
        }
        let target = slot.dialog.request_target();
        let peer = target.addr.ip();
        // The ACK goes where the 2xx came from until the hop is located.
        if slot.dialog.next_hop_needs_dns().is_some() {
            self.locate_next_hop(id);
        }
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let (via, _) = via_to(&self.locals, self.tls_local, target);
        let ack = slot.dialog.ack(via, &self.config.sip.user_agent).to_bytes();
        self.out.push(Transmit {
            target,
            bytes: ack.clone().into(),
        });
        let cancelled = slot.dialog.outbound.as_ref().is_some_and(|o| o.cancelled);
        if let Some(out) = slot.dialog.outbound.as_mut() {
            out.ack = Some(ack);
        }
        if cancelled || slot.dialog.state != DialogState::Confirmed || slot.released {
            // Answered after we gave up: end it at once.
            slot.dialog.state = DialogState::Confirmed;
            self.send_bye(id);
            return;
        }
        info!(call_id = %slot.dialog.call_id, "our INVITE was answered");
        slot.timer = session_timer::on_response(&resp.headers).map(|a| Timer::new(a, now()));
        slot.peer_update = allows_update(&resp.headers);
        let sdp = (!resp.body.is_empty()).then(|| resp.body.clone());
        deliver(&slot.events, DialogEvent::Answered { sdp, peer });
    }

    /// Our INVITE was challenged (`401`/`407`): sends it again, once, with
    /// the call's account (a carrier's trunk). `false` when it cannot be
    /// answered: no account, already tried, cancelled, or a challenge we do
    /// not understand. The transaction layer has ACKed the challenge.
    pub(super) fn resend_with_credentials(
        &mut self,
        id: DialogId,
        old_tx: TxId,
        resp: &Response,
    ) -> bool {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return false;
        };
        if slot.dialog.state != DialogState::Early {
            return false;
        }
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return false;
        };
        let Some(account) = out
            .auth
            .clone()
            .filter(|_| !out.authenticated && !out.cancelled)
        else {
            return false;
        };
        let (header, answer_in) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(challenge) = resp
            .headers
            .get_all(header)
            .find_map(crate::sip::digest::Challenge::parse)
        else {
            warn!(call_id = %slot.dialog.call_id, status = resp.status, "a challenge we cannot answer");
            return false;
        };
        let value = challenge.answer(
            &account.username,
            &account.password,
            "INVITE",
            &out.invite.uri,
            &random_token(16),
            1,
        );
        out.authenticated = true;
        info!(call_id = %slot.dialog.call_id, status = resp.status, realm = %challenge.realm, user = %account.username, "our INVITE was challenged; sending it again with credentials");
        self.resend_invite(id, old_tx, vec![(answer_in, value)])
    }

    /// Sends our INVITE again on a new transaction (next CSeq, new branch)
    /// with `set` headers replacing those of the same names.
    pub(super) fn resend_invite(
        &mut self,
        id: DialogId,
        old_tx: TxId,
        set: Vec<(&'static str, String)>,
    ) -> bool {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return false;
        };
        let target = slot.dialog.source;
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return false;
        };
        let mut invite = out.invite.clone();
        let seq = invite.cseq().map_or(1, |(n, _)| n) + 1;
        let (via, branch) = via_to(&self.locals, self.tls_local, target);
        invite.headers.replace_top_via(&via);
        invite.headers.remove("CSeq");
        invite.headers.push("CSeq", format!("{seq} INVITE"));
        for (k, v) in set {
            invite.headers.remove(k);
            invite.headers.push(k, v);
        }
        // Content-Length stays last for readability only; order is free.
        let (tx, transmit) = self.txs.send_request(&branch, &invite, target, now());
        out.invite = invite;
        out.invite_tx = tx;
        slot.dialog.local_seq = seq;
        self.out.push(transmit);
        self.by_invite.remove(&old_tx);
        self.by_invite.insert(tx, id);
        true
    }

    /// Gives up on our INVITE before its answer.
    pub(super) fn send_cancel(&mut self, id: DialogId) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return;
        };
        if out.cancelled {
            return;
        }
        out.cancelled = true;
        let Some(cancel) = slot.dialog.cancel() else {
            return;
        };
        let Some(branch) = cancel
            .top_via()
            .and_then(Via::parse)
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        info!(call_id = %slot.dialog.call_id, "cancelling our INVITE");
        let (_, transmit) = self
            .txs
            .send_request(&branch, &cancel, slot.dialog.source, now());
        self.out.push(transmit);
    }
}
