//! Session timers (RFC 4028) in the SIP core: how the peer's refresh
//! requests are answered (re-INVITE, UPDATE), our own refreshes, and a
//! session whose timer ran out. The timing itself is the pure
//! [`session_timer`](crate::sip::session_timer) machine, unit-tested on a
//! virtual clock; this only carries out what it decides.

use super::*;

/// Our session refresh in flight: its dialog, CSeq, and the ACK of its 2xx
/// (a re-INVITE's), sent again if the 2xx is.
pub(super) struct Refresh {
    pub(super) dialog: DialogId,
    pub(super) method: Method,
    pub(super) seq: u32,
    pub(super) ack: Option<Vec<u8>>,
}

/// The peer lists UPDATE in its `Allow`.
pub(super) fn allows_update(h: &Headers) -> bool {
    h.get_all_split("Allow")
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

impl SipCore {
    pub(super) fn timer_settings(&self) -> session_timer::Settings {
        let t = &self.config.calls.session_timer;
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        session_timer::Settings {
            expires: secs(t.expires),
            min_se: secs(t.min_se),
        }
    }

    /// `422 Session Interval Too Small` (RFC 4028 §6), with our `Min-SE`.
    pub(super) fn refuse_interval(
        &mut self,
        tx: TxId,
        req: &Request,
        min_se: u32,
        dialog: Option<DialogId>,
    ) {
        info!(call_id = %req.call_id(), min_se, "session interval too small");
        let mut resp = self.response(req, 422, dialog, None);
        resp.headers.push("Min-SE", min_se.to_string());
        self.out.extend(self.txs.respond(tx, &resp, now()));
    }

    /// The peer's refresh was answered 2xx: the timer follows what was
    /// agreed, and the 2xx says so.
    pub(super) fn apply_timer_answer(
        &mut self,
        id: DialogId,
        answer: TimerAnswer,
        resp: &mut Response,
    ) {
        let t = now();
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        match answer {
            TimerAnswer::Agree(a) => {
                for (k, v) in a.response_headers() {
                    resp.headers.push(k, v);
                }
                match slot.timer.as_mut() {
                    Some(timer) => {
                        timer.refreshed(Some(a), t);
                    }
                    None => slot.timer = Some(Timer::new(a, t)),
                }
            }
            TimerAnswer::None => slot.timer = None,
            TimerAnswer::TooSmall(_) => {}
        }
    }

    /// An UPDATE (RFC 3311): without SDP a session refresh we answer at
    /// once; with SDP an offer the call answers, like a re-INVITE.
    pub(super) fn on_update(&mut self, id: DialogId, tx: TxId, req: Request) {
        let answer = session_timer::on_request(&req.headers, self.timer_settings());
        if let TimerAnswer::TooSmall(min_se) = answer {
            return self.refuse_interval(tx, &req, min_se, Some(id));
        }
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return self.reply(tx, &req, 481, None);
        };
        slot.peer_update = true;
        if req.body.is_empty() {
            debug!(call_id = %slot.dialog.call_id, "session refreshed by UPDATE");
            let mut resp = self.response(&req, 200, Some(id), None);
            self.apply_timer_answer(id, answer, &mut resp);
            self.out.extend(self.txs.respond(tx, &resp, now()));
            return;
        }
        if slot.dialog.pending.is_some() || slot.dialog.awaiting_ack.is_some() {
            return self.reply(tx, &req, 491, Some(id));
        }
        let ctype = req.headers.get("Content-Type").unwrap_or_default();
        if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
            return self.reply(tx, &req, 415, Some(id));
        }
        let sdp = Some(req.body.clone());
        slot.timer_answer = Some(answer);
        slot.dialog.pending = Some(PendingInvite { tx, request: req });
        deliver(&slot.events, DialogEvent::ReInvite { sdp });
    }

    /// Once a second: refreshes due, and sessions whose timer ran out.
    pub(super) fn session_timers(&mut self, t: Instant) {
        let due: Vec<(DialogId, Due)> = self
            .dialogs
            .iter_mut()
            .filter(|(_, s)| s.dialog.state == DialogState::Confirmed && s.dialog.bye_tx.is_none())
            .filter_map(|(id, s)| s.timer.as_mut()?.poll(t).map(|d| (*id, d)))
            .collect();
        for (id, due) in due {
            match due {
                Due::Refresh => self.send_refresh(id, t),
                Due::Expire => self.session_expired(id),
            }
        }
    }

    /// No refresh came in time (or ours failed): the far end is gone.
    pub(super) fn session_expired(&mut self, id: DialogId) {
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        warn!(call_id = %slot.dialog.call_id, "session timer ran out; ending the call");
        metrics::counter!("hotline_sip_sessions_expired_total").increment(1);
        slot.timer = None;
        deliver(&slot.events, DialogEvent::Expired);
        self.send_bye(id);
    }

    /// Our session refresh: UPDATE without SDP when the peer allows it,
    /// else a re-INVITE with the SDP we last sent (unchanged, so the media
    /// stays as it is).
    pub(super) fn send_refresh(&mut self, id: DialogId, t: Instant) {
        let settings = self.timer_settings();
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(agreement) = slot.timer.map(|tm| tm.agreement) else {
            return;
        };
        let sdp = slot.local_sdp.clone().filter(|_| !slot.peer_update);
        let busy = slot.dialog.pending.is_some() || slot.dialog.awaiting_ack.is_some();
        if sdp.is_some() && busy {
            // An offer of theirs is open: ours would cross it. Later.
            if let Some(timer) = slot.timer.as_mut() {
                timer.refresh_failed(t);
            }
            return;
        }
        let method = if sdp.is_some() {
            Method::Invite
        } else {
            Method::Update
        };
        let Some((mut req, branch, target)) = self.in_dialog_request(id, method.clone()) else {
            return;
        };
        req.headers
            .push("Contact", self.contact(target.transport, target.addr.ip()));
        for (k, v) in agreement.request_headers(settings) {
            req.headers.push(k, v);
        }
        match sdp {
            Some(body) => {
                req.headers.push("Content-Type", "application/sdp");
                req.headers.push("Content-Length", body.len().to_string());
                req.body = body;
            }
            None => req.headers.push("Content-Length", "0"),
        }
        let seq = req.cseq().map_or(0, |(n, _)| n);
        debug!(call_id = %req.call_id(), %method, "refreshing the session");
        let (tx, transmit) = self.txs.send_request(&branch, &req, target, t);
        self.refreshes.retain(|_, r| r.dialog != id);
        self.refreshes.insert(
            tx,
            Refresh {
                dialog: id,
                method,
                seq,
                ack: None,
            },
        );
        self.out.push(transmit);
    }

    /// The answer to our refresh (`None`: none came).
    pub(super) fn on_refresh_answer(&mut self, tx: TxId, resp: Option<&Response>) {
        let t = now();
        let Some(refresh) = self.refreshes.get(&tx) else {
            return;
        };
        let (id, method, seq) = (refresh.dialog, refresh.method.clone(), refresh.seq);
        if let Some(ack) = refresh.ack.clone() {
            // A retransmitted 2xx of our re-INVITE: the same ACK again.
            if let Some(slot) = self.dialogs.get(&id) {
                self.out.push(Transmit {
                    target: slot.dialog.request_target(),
                    bytes: ack.into(),
                });
            }
            return;
        }
        let Some(slot) = self.dialogs.get_mut(&id) else {
            self.refreshes.remove(&tx);
            return;
        };
        match resp {
            Some(resp) if (200..300).contains(&resp.status) => {
                if method == Method::Invite {
                    let target = slot.dialog.request_target();
                    let (via, _) = via_to(&self.locals, self.tls_local, target);
                    let ack = slot
                        .dialog
                        .ack_of(seq, via, &self.config.sip.user_agent)
                        .to_bytes();
                    self.out.push(Transmit {
                        target,
                        bytes: ack.clone().into(),
                    });
                    if let Some(r) = self.refreshes.get_mut(&tx) {
                        r.ack = Some(ack);
                    }
                } else {
                    self.refreshes.remove(&tx);
                }
                let agreed = session_timer::on_response(&resp.headers);
                let still = slot
                    .timer
                    .as_mut()
                    .is_some_and(|tm| tm.refreshed(agreed, t));
                if !still {
                    slot.timer = None;
                }
                debug!(call_id = %slot.dialog.call_id, "session refreshed");
            }
            Some(resp) if resp.status == 422 => {
                self.refreshes.remove(&tx);
                let min = session_timer::min_se_of_422(&resp.headers);
                if let Some(timer) = slot.timer.as_mut() {
                    if let Some(min) = min {
                        timer.agreement.interval = timer.agreement.interval.max(min);
                    }
                    timer.refresh_failed(t);
                }
            }
            // RFC 4028 §10: the far end no longer has the session.
            None => {
                self.refreshes.remove(&tx);
                self.session_expired(id);
            }
            Some(resp) if matches!(resp.status, 408 | 481) => {
                self.refreshes.remove(&tx);
                self.session_expired(id);
            }
            Some(_) => {
                self.refreshes.remove(&tx);
                if let Some(timer) = slot.timer.as_mut() {
                    timer.refresh_failed(t);
                }
            }
        }
    }

    /// Our INVITE got `422` (RFC 4028 §7.3): sends it again, once, asking
    /// for the far end's `Min-SE`.
    pub(super) fn resend_with_longer_interval(
        &mut self,
        id: DialogId,
        old_tx: TxId,
        resp: &Response,
    ) -> bool {
        let settings = self.timer_settings();
        let Some(min_se) = session_timer::min_se_of_422(&resp.headers) else {
            return false;
        };
        let Some(slot) = self.dialogs.get_mut(&id) else {
            return false;
        };
        let Some(out) = slot.dialog.outbound.as_mut() else {
            return false;
        };
        if slot.dialog.state != DialogState::Early || out.interval_raised || out.cancelled {
            return false;
        }
        out.interval_raised = true;
        info!(call_id = %slot.dialog.call_id, min_se, "our session interval was too small; asking for more");
        let headers = session_timer::invite_headers(settings, min_se)
            .into_iter()
            .filter(|(k, _)| *k != "Supported")
            .collect();
        self.resend_invite(id, old_tx, headers)
    }
}
