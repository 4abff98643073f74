//! IVR flows: the YAML model, the validator with line/column errors, the
//! expression language, and the pure state machine a call walks through.
//! Nothing here does I/O or reads a clock: `Run::step(event, now)` returns
//! the `Action`s that the call task (or `hotline simulate`) carries out.

pub mod compile;
pub mod digits;
pub mod expr;
pub mod model;
pub mod node;
pub mod run;
pub mod set;

#[cfg(test)]
mod tests;

pub use compile::Catalog;
pub use expr::Vars;
pub use node::{Flow, Kind, NodeId};
pub use run::{Action, Event, Failure, Outcome, Run, WebhookOutcome, WebhookRequest};
pub use set::{FlowSet, Loaded};
