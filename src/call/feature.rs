//! An agent dialling a feature code from their softphone (`*45` log in,
//! `*46` log out, `*47` pause or resume; see `feature-codes:`). The SIP
//! layer has already checked the agent's digest credentials. The call is
//! answered, the ACD told, the new state spoken, and the call ended.

use crate::acd::AgentStatus;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{CallContext, Ending};
use crate::acd::Input;
use crate::media::MediaEvent;
use crate::sdp::{self, Origin};
use crate::sip::{DialogEvent, IncomingCall};

/// The disposition `code` for the agent's last call: a beep when taken,
/// "not allowed" when not (no call, or not one of its queue's codes).
async fn dispose(ctx: &CallContext, agent: &str, code: &str) -> &'static str {
    let last = ctx.acd.view().await.and_then(|(agents, _)| {
        agents
            .into_iter()
            .find(|a| a.id == agent)
            .and_then(|a| a.last_call)
    });
    let Some(call) = last else {
        info!(%agent, %code, "disposition by feature code: the agent has no last call");
        return "agent/not-allowed";
    };
    let handles = super::disposition::Handles {
        config: &ctx.config,
        calls: &ctx.calls,
        store: &ctx.store,
        acd: &ctx.acd,
    };
    match super::disposition::set(&handles, &call, code, Some(agent)).await {
        Ok(_) => "beep",
        Err(e) => {
            info!(%agent, %code, %call, error = %e, "disposition by feature code refused");
            "agent/not-allowed"
        }
    }
}

pub async fn run(ctx: &CallContext, call: IncomingCall, agent: String, code: String) -> Ending {
    let IncomingCall {
        dialog,
        mut events,
        offer,
        source,
        secure,
        ..
    } = call;
    let policy = super::agent_policy(&ctx.config, &agent, secure);
    let Some(n) = offer
        .as_deref()
        .and_then(|b| sdp::parse(b).ok())
        .and_then(|o| sdp::negotiate_with(&o, policy, None).ok())
    else {
        dialog.respond(488).await;
        return Ending::Refused;
    };
    let mut media = match ctx.media.open().await {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "no media for the feature code");
            dialog.respond(503).await;
            return Ending::Refused;
        }
    };
    media
        .configure(super::stream_of(&n, true, Some(source.ip())))
        .await;
    let mut origin = Origin::new(ctx.config.media_address());
    dialog
        .answer(sdp::answer(&mut origin, media.local_port(), &n))
        .await;

    let codes = &ctx.config.feature_codes;
    let before = ctx.acd.agent_state(&agent).await;
    let disposition = code
        .strip_prefix(codes.disposition.as_str())
        .filter(|rest| !codes.disposition.is_empty() && !rest.is_empty());
    let mut prompt = None;
    if let Some(given) = disposition {
        prompt = Some(dispose(ctx, &agent, given).await);
    } else if code == codes.login {
        ctx.acd
            .send(Input::Login {
                agent: agent.clone(),
            })
            .await;
    } else if code == codes.logout {
        ctx.acd
            .send(Input::Logout {
                agent: agent.clone(),
            })
            .await;
    } else if before == Some(AgentStatus::Paused) {
        ctx.acd
            .send(Input::Unpause {
                agent: agent.clone(),
            })
            .await;
    } else {
        ctx.acd
            .send(Input::Pause {
                agent: agent.clone(),
                reason: "break".into(),
            })
            .await;
    }
    let after = ctx.acd.agent_state(&agent).await;
    let prompt = prompt.unwrap_or(match (before, after) {
        (b, a) if b == a && code != codes.login => "agent/not-allowed",
        (_, Some(AgentStatus::LoggedOut)) => "agent/logged-out",
        (_, Some(AgentStatus::Paused)) => "agent/paused",
        (Some(AgentStatus::LoggedOut), Some(_)) => "agent/logged-in",
        (_, Some(_)) => "agent/available",
        (_, None) => "agent/not-allowed",
    });
    info!(%agent, %code, ?before, ?after, "agent state by feature code");
    let token = match ctx.prompts.get(prompt) {
        Some(p) => {
            media.play(p, 1).await;
            Some(1)
        }
        None => None,
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::select! {
            ev = media.events.recv() => match ev {
                Some(MediaEvent::PlaybackDone { token: t }) if Some(t) == token => break,
                Some(_) => {}
                None => break,
            },
            ev = events.recv() => match ev {
                Some(DialogEvent::Bye) | None => return Ending::CallerHungUp,
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(until) => break,
        }
        if token.is_none() {
            break;
        }
    }
    dialog.hangup().await;
    Ending::WeHungUp
}
