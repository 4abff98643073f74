//! An agent's disposition of a call: one of its queue's codes, given from
//! the operations API or dialled from the agent's phone during wrap-up
//! (`feature-codes.disposition` then the code). It goes into the call's
//! record (with whether it counts as resolved on first contact), and a
//! wrap-up that waited for it may end.

use tracing::info;

use super::live::LiveCalls;
use crate::acd::actor::AcdHandle;
use crate::acd::Input;
use crate::config::Config;
use crate::store::StoreHandle;

/// Why a disposition was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispositionError {
    #[error("no such call")]
    NoSuchCall,
    #[error("the call was not answered by an agent")]
    NotAnswered,
    #[error("the call was answered by another agent")]
    NotYours,
    #[error("`{code}` is not a disposition of the queue {queue} (its codes: {})", valid.join(", "))]
    UnknownCode {
        code: String,
        queue: String,
        valid: Vec<String>,
    },
    #[error("the record could not be written: {0}")]
    Store(String),
}

/// A disposition taken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Disposed {
    pub call_id: String,
    pub agent: String,
    pub queue: String,
    pub code: String,
    pub label: String,
    pub first_contact_resolution: bool,
}

/// The handles a disposition needs.
pub struct Handles<'a> {
    pub config: &'a Config,
    pub calls: &'a LiveCalls,
    pub store: &'a StoreHandle,
    pub acd: &'a AcdHandle,
}

/// Gives `call_id` the disposition `code`; `by_agent`: only if that agent
/// answered it (a phone's feature code).
pub async fn set(
    h: &Handles<'_>,
    call_id: &str,
    code: &str,
    by_agent: Option<&str>,
) -> Result<Disposed, DispositionError> {
    let (queue, agent) = match h.calls.get(call_id) {
        Some(live) => (live.queue, live.agent),
        None => {
            let cdr = h
                .store
                .cdr_of_call(call_id)
                .await
                .map_err(|e| DispositionError::Store(e.to_string()))?
                .ok_or(DispositionError::NoSuchCall)?;
            (cdr.queue, cdr.agent)
        }
    };
    let (Some(queue), Some(agent)) = (queue, agent) else {
        return Err(DispositionError::NotAnswered);
    };
    if by_agent.is_some_and(|a| a != agent) {
        return Err(DispositionError::NotYours);
    }
    let q = h.config.queues.get(&queue);
    let Some(d) = q.and_then(|q| q.disposition_of(code)) else {
        return Err(DispositionError::UnknownCode {
            code: code.to_owned(),
            queue,
            valid: q
                .map(|q| q.dispositions.iter().map(|d| d.code.clone()).collect())
                .unwrap_or_default(),
        });
    };
    let written = h
        .store
        .set_disposition(call_id, &d.code, d.first_contact_resolution)
        .await
        .map_err(|e| DispositionError::Store(e.to_string()))?;
    if !written {
        return Err(DispositionError::NoSuchCall);
    }
    info!(%call_id, %agent, %queue, code = %d.code, fcr = d.first_contact_resolution, "disposition");
    h.acd
        .send(Input::Disposed {
            agent: agent.clone(),
            call: call_id.to_owned(),
        })
        .await;
    Ok(Disposed {
        call_id: call_id.to_owned(),
        agent,
        queue,
        code: d.code.clone(),
        label: d.label.clone(),
        first_contact_resolution: d.first_contact_resolution,
    })
}
