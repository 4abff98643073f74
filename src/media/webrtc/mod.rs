//! Browser legs: WebRTC on one shared UDP port. The hub's task reads the
//! port and hands each datagram to its leg's inbox (found by [`route`]);
//! each leg's [`Endpoint`] lives in its channel on a media clock, which
//! drives it each tick and sends through the same port. No task per leg.

mod endpoint;
pub mod opus;
pub mod peer;
mod reports;
pub mod route;
#[cfg(test)]
mod test_audio;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::mpsc;

pub use endpoint::{Endpoint, LinkState, Settings, WebRtcError, Wire, DTMF_PT};

use crate::config::WebRtcConfig;
use crate::sdp::Codec;

/// Datagrams waiting for one leg's clock tick; past this many (a flood,
/// or a clock far behind) more are dropped and counted.
pub const INBOX: usize = 256;

/// How many leg registrations wait for the hub's task.
const REGISTRATIONS: usize = 256;

/// One datagram for a leg.
pub struct Datagram {
    pub from: SocketAddr,
    pub bytes: BytesMut,
    /// When the shared port's task read it (wall clock since the epoch):
    /// its arrival, for the leg's jitter.
    pub at: std::time::Duration,
}

/// A leg as its channel holds it: the endpoint, the datagrams routed to
/// it, and the shared socket to send through.
pub(crate) struct BrowserLink {
    pub endpoint: Endpoint,
    pub inbox: mpsc::Receiver<Datagram>,
    pub socket: UdpSocket,
}

struct Registration {
    id: u64,
    ufrag: String,
    inbox: mpsc::Sender<Datagram>,
}

/// The shared WebRTC port.
pub struct Hub {
    settings: Settings,
    socket: UdpSocket,
    register: mpsc::Sender<Registration>,
}

impl Hub {
    /// Binds `bind`:`config.port` and starts the task that routes what
    /// arrives; needs a running tokio runtime.
    pub fn start(
        bind: IpAddr,
        advertise: IpAddr,
        config: &WebRtcConfig,
    ) -> std::io::Result<Arc<Hub>> {
        let socket = UdpSocket::bind(SocketAddr::new(bind, config.port))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let reader = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let (register, registrations) = mpsc::channel(REGISTRATIONS);
        tokio::spawn(demux(reader, registrations));
        Ok(Arc::new(Hub {
            settings: Settings {
                local,
                candidate: SocketAddr::new(advertise, local.port()),
                consent_timeout: config.consent_timeout,
                opus: config.codec == crate::config::BrowserCodec::Opus,
            },
            socket,
            register,
        }))
    }

    /// The shared port's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.settings.local
    }

    /// A new leg sending `codec`, registered with the port, and its offer.
    pub(crate) async fn link(
        &self,
        id: u64,
        codec: Codec,
        ssrc: u32,
    ) -> Result<(BrowserLink, String), WebRtcError> {
        let (endpoint, offer) = Endpoint::offer(&self.settings, codec, ssrc, Instant::now())?;
        let socket = self
            .socket
            .try_clone()
            .map_err(|e| WebRtcError::Setup(e.to_string()))?;
        let (tx, inbox) = mpsc::channel(INBOX);
        let registration = Registration {
            id,
            ufrag: endpoint.ufrag().to_owned(),
            inbox: tx,
        };
        self.register
            .send(registration)
            .await
            .map_err(|_| WebRtcError::Setup("the WebRTC port is closed".into()))?;
        Ok((
            BrowserLink {
                endpoint,
                inbox,
                socket,
            },
            offer,
        ))
    }
}

/// Reads the shared port and routes each datagram to its leg.
async fn demux(socket: tokio::net::UdpSocket, mut registrations: mpsc::Receiver<Registration>) {
    let mut router = route::Router::default();
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            biased;
            reg = registrations.recv() => {
                let Some(reg) = reg else { return };
                // Legs whose channel is gone go first.
                router.sweep(|tx: &mpsc::Sender<Datagram>| tx.is_closed());
                if !router.add(reg.id, &reg.ufrag, reg.inbox) {
                    tracing::warn!("a browser leg's ICE ufrag is taken; the leg cannot connect");
                }
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let packet = &buf[..n];
                let Some((id, inbox)) = router.route(packet, from) else {
                    metrics::counter!("hotline_webrtc_unrouted_total").increment(1);
                    continue;
                };
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let datagram = Datagram { from, bytes: BytesMut::from(packet), at };
                match inbox.try_send(datagram) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics::counter!("hotline_webrtc_inbox_full_total").increment(1);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => router.remove(id),
                }
            }
        }
    }
}
