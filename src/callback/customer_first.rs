//! Delivering a callback customer first: once it stands at the head of its
//! queue the customer is called; when they press 1 they wait there, on
//! the queue's music, and the next free agent is rung and bridged to them.
//! At most one customer per queue is called ahead of an agent this way:
//! only the head of the line.

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::deliver::{refusal, wait_for_hangup, Attempt, Progress};
use crate::acd::actor::ToCall;
use crate::acd::Input as AcdInput;
use crate::leg::playlist::Playlist;
use crate::leg::{Leg, LegEvent};
use crate::media::{dtmf, MediaEvent};
use crate::sip::DialogEvent;

impl Attempt {
    /// Runs the attempt; the ACD's offers for the callback come on `offers`
    /// (the one it was started with, if any, is in `self.agents`).
    pub async fn run_customer_first(self, mut offers: mpsc::UnboundedReceiver<ToCall>) {
        let outcome = self.customer_first(&mut offers).await;
        if !matches!(outcome, Progress::Done) {
            // Not bridged: its entry leaves the queue (the service puts it
            // back at its place for the next attempt).
            self.ctx
                .acd
                .send(AcdInput::Leave {
                    call: self.acd_id.clone(),
                })
                .await;
        }
        self.report(outcome);
    }

    async fn customer_first(&self, offers: &mut mpsc::UnboundedReceiver<ToCall>) -> Progress {
        let cb = &self.callback;
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return Progress::Failed {
                attempt: None,
                outcome: "failed",
            };
        };
        let (attempt, n) = match self.start_attempt(None).await {
            Ok(v) => v,
            Err(failed) => return failed,
        };
        let failed = |outcome| Progress::Failed {
            attempt: Some(attempt),
            outcome,
        };
        let media = match self.ctx.media.open() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no media for the customer leg");
                return failed("failed");
            }
        };
        let mut customer = self.dial_customer(media, n);
        if let Err(outcome) = self.confirmed(&mut customer).await {
            return failed(outcome);
        }
        // At the head of the line, on the queue's music, until an agent.
        let music = self
            .ctx
            .config
            .queues
            .get(&cb.queue)
            .map(|q| q.music.clone())
            .unwrap_or_else(|| "music/default".into());
        let mut list = Playlist::default();
        list.start_then_loop(Vec::new(), music, &mut customer.media, &self.ctx.prompts);
        info!(
            callback = cb.id,
            "the customer waits at the head of the queue"
        );
        let mut pending = (!self.agents.is_empty()).then(|| ToCall::Offer {
            agents: self.agents.clone(),
            ring_timeout: self.ring_timeout,
        });
        let outcome = loop {
            let offer = match pending.take() {
                Some(o) => o,
                None => tokio::select! {
                    o = offers.recv() => match o {
                        Some(o) => o,
                        None => break failed("failed"),
                    },
                    () = wait_for_hangup(&mut customer) => break failed("abandoned"),
                },
            };
            let ToCall::Offer {
                agents,
                ring_timeout,
            } = offer
            else {
                continue;
            };
            let rung = tokio::select! {
                r = self.ring_agent(&agents, ring_timeout) => r,
                () = wait_for_hangup(&mut customer) => {
                    info!(callback = cb.id, "the customer hung up while an agent's phone rang");
                    break failed("abandoned");
                }
            };
            let Some((mut agent_leg, agent)) = rung else {
                self.ctx
                    .acd
                    .send(AcdInput::NoAnswer {
                        call: self.acd_id.clone(),
                    })
                    .await;
                continue;
            };
            self.ctx
                .acd
                .send(AcdInput::Answered {
                    call: self.acd_id.clone(),
                    agent: agent.clone(),
                })
                .await;
            list.stop(&customer.media);
            customer.media.bridge(&agent_leg.media);
            info!(callback = cb.id, %agent, "callback connected: customer and agent bridged");
            self.report(Progress::Connected {
                attempt,
                agent: Some(agent.clone()),
            });
            tokio::select! {
                () = wait_for_hangup(&mut customer) => {
                    if let Some(d) = agent_leg.dialog() {
                        d.hangup();
                    }
                }
                () = wait_for_hangup(&mut agent_leg) => {
                    if let Some(d) = customer.dialog() {
                        d.hangup();
                    }
                }
            }
            self.ctx
                .acd
                .send(AcdInput::Ended {
                    call: self.acd_id.clone(),
                })
                .await;
            break Progress::Done;
        };
        if let Some(d) = customer.dialog() {
            d.hangup();
        }
        drop(slot);
        outcome
    }

    /// Until the customer answered and pressed 1; the outcome otherwise.
    async fn confirmed(&self, customer: &mut Leg) -> Result<(), &'static str> {
        let cb = &self.callback;
        let mut guard = Playlist::default();
        let mut confirm_by = None;
        loop {
            let ev = tokio::select! {
                ev = customer.next() => ev,
                _ = crate::leg::sleep_until_opt(confirm_by) => {
                    info!(callback = cb.id, "the customer did not press 1 (an answering machine?)");
                    return Err("not-confirmed");
                }
            };
            let key = match ev {
                LegEvent::Answered { sdp, .. } => {
                    confirm_by =
                        Some(self.customer_answered(customer, &mut guard, sdp.as_deref())?);
                    continue;
                }
                LegEvent::Rejected(status) => {
                    info!(
                        callback = cb.id,
                        status, "the customer's side refused the call"
                    );
                    return Err(refusal(status));
                }
                LegEvent::NoAnswer => {
                    info!(callback = cb.id, "the customer did not answer");
                    return Err("no-answer");
                }
                LegEvent::Failed(why) => {
                    warn!(callback = cb.id, error = %why, "the callback could not be placed");
                    return Err("failed");
                }
                LegEvent::Dialog(DialogEvent::Bye | DialogEvent::Ended) | LegEvent::Gone => {
                    return Err("not-confirmed")
                }
                LegEvent::Dialog(DialogEvent::Info { content_type, body }) => {
                    dtmf::parse_info(&content_type, &body).map(|d| d.as_char())
                }
                LegEvent::Media(MediaEvent::Digit(d, _)) => Some(d.as_char()),
                LegEvent::Media(MediaEvent::PlaybackDone { token }) => {
                    guard.on_done(token, &mut customer.media, &self.ctx.prompts);
                    None
                }
                _ => None,
            };
            if key == Some('1') && customer.bridged {
                guard.stop(&customer.media);
                return Ok(());
            }
        }
    }
}
