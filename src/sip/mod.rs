//! SIP signalling: transports, message parsing (rsipstack's rsip-derived
//! parser, wrapped so that no rsipstack type leaves this module),
//! transactions, dialogs and the core task that ties them together.

pub mod core;
pub mod dialog;
pub mod digest;
pub mod dns;
pub mod handle;
pub mod header;
pub mod identity;
pub mod limits;
pub mod message;
pub mod registrar;
pub mod reply;
pub mod session_timer;
pub mod transaction;
pub mod transport;
pub mod trunk_client;

pub use self::core::{start, SipError};
pub use self::handle::{
    Account, DialError, Dialer, DialogEvent, DialogHandle, IncomingCall, OutboundCall,
    Registration, SipLayer, SipStatus,
};
pub use self::transaction::{Target, Transport};
