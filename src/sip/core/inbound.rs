//! The SIP core's answering side: a new INVITE (admitted, refused or
//! challenged), its CANCEL and ACK, and requests within a dialog.

use super::*;

impl SipCore {
    pub(super) fn on_invite(&mut self, tx: TxId, req: Request, from: Target) {
        let call_id = req.call_id().to_owned();
        if self.status.draining.load(Ordering::SeqCst) {
            info!(%call_id, "refusing call: shutting down");
            let mut resp = self.response(&req, 503, None, None);
            resp.headers.push("Retry-After", "30");
            self.out.extend(self.txs.respond(tx, &resp, now()));
            return;
        }
        if let Some(p) = self.admission.refusing() {
            warn!(%call_id, reason = p.as_str(), "refusing call: overloaded");
            return self.refuse_busy(tx, &req, p.as_str());
        }
        let dialed_user = SipUri::parse(&req.uri)
            .and_then(|u| u.user)
            .unwrap_or_default();
        let codes = &self.config.feature_codes;
        let disposition = !codes.disposition.is_empty()
            && dialed_user.len() > codes.disposition.len()
            && dialed_user.starts_with(&codes.disposition);
        let is_code = disposition
            || [&codes.login, &codes.logout, &codes.pause]
                .iter()
                .any(|c| **c == dialed_user);
        let mut feature = None;
        let trunk = if is_code {
            // An agent's phone, dialling a feature code: prove who it is.
            let agent = req
                .headers
                .get("From")
                .and_then(NameAddr::parse)
                .and_then(|n| SipUri::parse(&n.uri))
                .and_then(|u| u.user)
                .unwrap_or_default();
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Err(answer) = self
                .registrar
                .authenticate(&req, &agent, from.addr, now(), wall)
            {
                let mut resp = self.response(&req, answer.status, None, None);
                for (k, v) in answer.headers {
                    resp.headers.push(k, v);
                }
                self.out.extend(self.txs.respond(tx, &resp, now()));
                return;
            }
            info!(%call_id, %agent, code = %dialed_user, "agent feature code");
            feature = Some((agent, dialed_user.clone()));
            "agents".to_owned()
        } else {
            let Some(trunk) = self.config.trunk_for(from.addr.ip()) else {
                warn!(%call_id, peer = %from.addr, "call from an address no trunk allows");
                crate::sip::registrar::log_refused(from.addr.ip(), "no-trunk", None);
                return self.reply(tx, &req, 403, None);
            };
            trunk.name.clone()
        };
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").unwrap_or_default();
            if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
                return self.reply(tx, &req, 415, None);
            }
        }
        let timer_answer = session_timer::on_request(&req.headers, self.timer_settings());
        if let TimerAnswer::TooSmall(min_se) = timer_answer {
            return self.refuse_interval(tx, &req, min_se, None);
        }
        let local_tag = random_token(10);
        let Some(dialog) = Dialog::from_invite(&req, local_tag.clone(), tx, from) else {
            return self.reply(tx, &req, 400, None);
        };
        let inbound = self
            .config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .map(|t| crate::sip::limits::TrunkCaps {
                max_calls: t.inbound.max_calls,
                max_cps: t.inbound.max_cps,
            })
            .unwrap_or_default();
        if let Err(why) = self
            .caps
            .admit(&trunk, inbound, self.config.calls.max_concurrent, now())
        {
            warn!(%call_id, %trunk, reason = why.as_str(), "refusing call: at its cap");
            return self.refuse_busy(tx, &req, why.as_str());
        }
        let admitted = trunk.clone();
        self.reply(tx, &req, 100, None);

        let from_hdr = req.headers.get("From").and_then(NameAddr::parse);
        let from_user = from_hdr
            .as_ref()
            .and_then(|f| SipUri::parse(&f.uri))
            .and_then(|u| u.user)
            .unwrap_or_else(|| "anonymous".into());
        // A trusted trunk's asserted identity is the caller's number.
        let trusted = self
            .config
            .trunks
            .iter()
            .any(|t| t.name == trunk && t.trust_identity);
        let caller = trusted
            .then(|| crate::sip::identity::asserted_user(&req.headers))
            .flatten()
            .unwrap_or(from_user);
        let hidden = crate::sip::identity::withheld(&req.headers)
            || caller.eq_ignore_ascii_case("anonymous");
        let caller_name = from_hdr.and_then(|f| f.display);
        let dialed = SipUri::parse(&req.uri)
            .and_then(|u| u.user)
            .unwrap_or_default();

        let id = DialogId(self.next_dialog.fetch_add(1, Ordering::SeqCst) + 1);
        let (ev_tx, ev_rx) = mpsc::channel(crate::sip::handle::DIALOG_EVENTS);
        let call = IncomingCall {
            call_id: call_id.clone(),
            from_tag: dialog.remote_tag.clone(),
            caller,
            caller_name,
            dialed,
            trunk,
            source: from.addr,
            secure: from.transport == Transport::Tls,
            hidden,
            offer: (!req.body.is_empty()).then(|| req.body.clone()),
            dialog: DialogHandle {
                id,
                commands: self.cmd_tx.clone(),
            },
            events: ev_rx,
            feature,
        };
        if self.incoming.try_send(call).is_err() {
            warn!(%call_id, "call layer overloaded; refusing call");
            self.caps.release(&admitted);
            // The handle inside the dropped call sends a Release we ignore.
            return self.refuse_busy(tx, &req, "call-layer");
        }
        self.by_call.insert((call_id, local_tag), id);
        self.by_tx.insert(tx, id);
        let mut slot = DialogSlot::new(dialog, ev_tx, Some(admitted));
        slot.timer_answer = Some(timer_answer);
        slot.peer_update = allows_update(&req.headers);
        self.dialogs.insert(id, slot);
        self.locate_next_hop(id);
        self.status.dialogs.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn on_cancel(&mut self, tx: TxId, req: &Request, key: &ServerKey) {
        let invite_tx = self.txs.server(&key.invite_of_cancel());
        let Some(invite_tx) = invite_tx else {
            return self.reply(tx, req, 481, None);
        };
        self.reply(tx, req, 200, None);
        if !self.txs.is_proceeding(invite_tx) {
            return; // already answered: the CANCEL has no effect
        }
        let Some(&id) = self.by_tx.get(&invite_tx) else {
            return;
        };
        if let Some(slot) = self.dialogs.get_mut(&id) {
            info!(call_id = %slot.dialog.call_id, "caller cancelled");
            if let Some(p) = slot.dialog.pending.take() {
                deliver(&slot.events, DialogEvent::Cancelled);
                slot.dialog.state = DialogState::Terminated;
                let resp = self.response(&p.request, 487, Some(id), None);
                self.out.extend(self.txs.respond(p.tx, &resp, now()));
            }
        }
        self.by_tx.remove(&invite_tx);
        self.forget(id);
    }

    pub(super) fn on_ack(&mut self, req: &Request) {
        let Some(tag) = req.headers.get("To").and_then(tag_of) else {
            return;
        };
        let Some(&id) = self.by_call.get(&(req.call_id().to_owned(), tag)) else {
            return;
        };
        let seq = req.cseq().map(|(n, _)| n);
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        match slot.dialog.awaiting_ack {
            Some((cseq, tx)) if Some(cseq) == seq => {
                slot.dialog.awaiting_ack = None;
                self.txs.acknowledged(tx);
                self.by_tx.remove(&tx);
                let sdp = (!req.body.is_empty()).then(|| req.body.clone());
                deliver(&slot.events, DialogEvent::Ack { sdp });
            }
            _ => {} // a retransmitted ACK
        }
    }

    pub(super) fn on_in_dialog(&mut self, id: DialogId, tx: TxId, req: Request) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return self.reply(tx, &req, 481, None);
        };
        let seq = req.cseq().map(|(n, _)| n).unwrap_or(0);
        if req.method != Method::Cancel {
            if seq <= slot.dialog.remote_seq && slot.dialog.remote_seq != 0 {
                return self.reply(tx, &req, 500, None);
            }
            slot.dialog.remote_seq = seq;
        }
        match req.method {
            Method::Bye => {
                info!(call_id = %slot.dialog.call_id, "caller hung up");
                slot.dialog.state = DialogState::Terminated;
                deliver(&slot.events, DialogEvent::Bye);
                self.reply(tx, &req, 200, Some(id));
                self.forget(id);
            }
            Method::Invite => {
                if slot.dialog.pending.is_some() || slot.dialog.awaiting_ack.is_some() {
                    return self.reply(tx, &req, 491, Some(id));
                }
                let answer = session_timer::on_request(&req.headers, self.timer_settings());
                if let TimerAnswer::TooSmall(min_se) = answer {
                    return self.refuse_interval(tx, &req, min_se, Some(id));
                }
                let Some(slot) = self.dialogs.get_mut(&id) else {
                    return;
                };
                let sdp = (!req.body.is_empty()).then(|| req.body.clone());
                let contact = req.headers.get("Contact").and_then(NameAddr::parse);
                if let Some(contact) = contact.filter(|c| SipUri::parse(&c.uri).is_some()) {
                    slot.dialog.remote_target = contact.uri;
                }
                slot.timer_answer = Some(answer);
                slot.peer_update |= allows_update(&req.headers);
                slot.dialog.pending = Some(PendingInvite { tx, request: req });
                self.by_tx.insert(tx, id);
                deliver(&slot.events, DialogEvent::ReInvite { sdp });
                self.locate_next_hop(id);
            }
            Method::Update => self.on_update(id, tx, req),
            Method::Info => {
                let content_type = req
                    .headers
                    .get("Content-Type")
                    .unwrap_or_default()
                    .to_owned();
                deliver(
                    &slot.events,
                    DialogEvent::Info {
                        content_type,
                        body: req.body.clone(),
                    },
                );
                self.reply(tx, &req, 200, Some(id));
            }
            Method::Options => self.reply(tx, &req, 200, Some(id)),
            Method::Refer => {
                let refer_to = req
                    .headers
                    .get("Refer-To")
                    .or_else(|| req.headers.get("r"))
                    .and_then(NameAddr::parse)
                    .filter(|n| SipUri::parse(&n.uri).is_some());
                match refer_to {
                    Some(to) => {
                        info!(call_id = %slot.dialog.call_id, refer_to = %to.uri, "REFER received");
                        deliver(&slot.events, DialogEvent::Refer { refer_to: to.uri });
                        self.reply(tx, &req, 202, Some(id));
                    }
                    None => self.reply(tx, &req, 400, Some(id)),
                }
            }
            Method::Other(_) => self.reply(tx, &req, 501, Some(id)),
            _ => self.reply(tx, &req, 405, Some(id)),
        }
    }
}
