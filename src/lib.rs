//! Hotline: a SIP IVR and call-center engine.
//!
//! Layers, each using only those above it: [`sip`] (signalling), [`sdp`]
//! (offer/answer), [`media`] (RTP, prompts, DTMF), and [`call`], where one
//! task per call ties them together. [`config`] is plain data every layer reads.

pub mod acd;
pub mod api;
pub mod call;
pub mod callback;
pub mod config;
pub mod connections;
pub mod diagnostic;
pub mod dialplan;
pub mod engine;
pub mod events;
pub mod flow;
pub mod kpi;
pub mod leg;
pub mod loader;
pub mod media;
pub mod overload;
pub mod retention;
pub mod sdp;
pub mod service;
pub mod sip;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod uri;
