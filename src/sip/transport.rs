//! SIP over UDP, TCP and TLS: sockets, stream framing, and handing raw
//! messages to the SIP core. Parsing happens in the core so a malformed
//! message can be answered with `400`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::transaction::{Target, Transport};
use crate::connections::{ConnectionClock, ConnectionLimits, Expiry, OpenConnections};

/// What the transports hand to the SIP core.
#[derive(Debug)]
pub enum Inbound {
    Message {
        bytes: Vec<u8>,
        from: Target,
    },
    /// A stream connection (TCP or TLS) is open, accepted or ours.
    TcpOpened {
        peer: SocketAddr,
        writer: mpsc::Sender<Arc<[u8]>>,
        /// Set by the core while the connection carries a registration or
        /// a dialog: it is then kept past its idle timeout.
        in_use: Arc<AtomicBool>,
        transport: Transport,
    },
    TcpClosed {
        peer: SocketAddr,
    },
    /// A connection of ours (TLS to a trunk) could not be opened.
    ConnectFailed {
        peer: SocketAddr,
        reason: String,
    },
}

/// Receives datagrams forever and forwards each one (up to `max_message`
/// bytes; bigger ones are dropped and counted).
pub async fn run_udp(socket: Arc<UdpSocket>, to_core: mpsc::Sender<Inbound>, max_message: usize) {
    // One byte more than allowed, so a datagram too big is seen whole.
    let mut buf = vec![0u8; max_message.saturating_add(1).min(65_536)];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                if n > max_message {
                    metrics::counter!("hotline_sip_messages_too_large_total", "transport" => "udp")
                        .increment(1);
                    debug!(%peer, size = n, "SIP datagram too large; dropped");
                    continue;
                }
                let bytes = &buf[..n];
                // RFC 5626 keep-alives (CRLF) need no answer here.
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let msg = Inbound::Message {
                    bytes: bytes.to_vec(),
                    from: Target {
                        transport: Transport::Udp,
                        addr: peer,
                    },
                };
                if to_core.send(msg).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable surfaces as an error on some systems: not fatal.
            Err(e) => debug!(error = %e, "udp receive error"),
        }
    }
}

/// Accepts TCP connections forever, within the connection budget: beyond
/// `per-source` from one address or `max` in all, a new connection is
/// closed at once. With `tls`, each is a TLS connection whose handshake
/// must end within the budget's message timeout.
pub async fn run_tcp(
    listener: TcpListener,
    to_core: mpsc::Sender<Inbound>,
    limits: ConnectionLimits,
    max_message: usize,
    tls: Option<crate::tls::Acceptor>,
) {
    let label = if tls.is_some() { "tls" } else { "tcp" };
    let mut open = OpenConnections::new(limits);
    // Connections tell the accept loop when they close.
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<IpAddr>();
    loop {
        tokio::select! {
            Some(ip) = closed_rx.recv() => {
                open.closed(ip);
                metrics::gauge!("hotline_sip_connections", "transport" => label).set(open.total() as f64);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(why) = open.admit(peer.ip()) {
                        metrics::counter!("hotline_sip_connections_refused_total", "reason" => why.as_str())
                            .increment(1);
                        debug!(%peer, reason = why.as_str(), "{label} connection refused");
                        drop(stream);
                        continue;
                    }
                    metrics::gauge!("hotline_sip_connections", "transport" => label).set(open.total() as f64);
                    let to_core = to_core.clone();
                    let closed = closed_tx.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        match tls {
                            None => {
                                serve_stream(stream, peer, Transport::Tcp, to_core, limits, max_message).await;
                            }
                            Some(acceptor) => {
                                if let Some(tls) = acceptor.handshake(stream, limits.message_timeout, peer).await {
                                    serve_stream(tls, peer, Transport::Tls, to_core, limits, max_message).await;
                                }
                            }
                        }
                        let _ = closed.send(peer.ip());
                    });
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) among others: wait, do not spin.
                    warn!(error = %e, "{label} accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Opens a TLS connection of ours to `peer` (a trunk's proxy), checking
/// its certificate against `name`, and serves it like an accepted one.
pub async fn connect_tls(
    peer: SocketAddr,
    name: rustls::pki_types::ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    to_core: mpsc::Sender<Inbound>,
    limits: ConnectionLimits,
    max_message: usize,
) {
    let wait = limits.message_timeout;
    let stream = match tokio::time::timeout(wait, TcpStream::connect(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return connect_failed(&to_core, peer, e.to_string()).await,
        Err(_) => return connect_failed(&to_core, peer, "connect timed out".into()).await,
    };
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(wait, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => serve_stream(tls, peer, Transport::Tls, to_core, limits, max_message).await,
        Ok(Err(e)) => connect_failed(&to_core, peer, e.to_string()).await,
        Err(_) => connect_failed(&to_core, peer, "TLS handshake timed out".into()).await,
    }
}

async fn connect_failed(to_core: &mpsc::Sender<Inbound>, peer: SocketAddr, reason: String) {
    let _ = to_core.send(Inbound::ConnectFailed { peer, reason }).await;
}

async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    to_core: mpsc::Sender<Inbound>,
    limits: ConnectionLimits,
    max_message: usize,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(256);
    let in_use = Arc::new(AtomicBool::new(false));
    // RFC 5626 §4.4.1: a CRLFCRLF ping gets a CRLF pong.
    let pong = tx.clone();
    let opened = Inbound::TcpOpened {
        peer,
        writer: tx,
        in_use: in_use.clone(),
        transport,
    };
    if to_core.send(opened).await.is_err() {
        return;
    }
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut clock = ConnectionClock::opened(limits, Instant::now());
    // Line ends seen since the last message (a ping is four of them).
    let mut crlf = 0usize;
    'read: loop {
        let (deadline, expiry) = clock.deadline();
        let read = tokio::time::timeout_at(deadline.into(), reader.read(&mut chunk)).await;
        let n = match read {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) if expiry == Expiry::Idle && in_use.load(Ordering::Relaxed) => {
                clock.keep(Instant::now());
                continue;
            }
            Err(_) => {
                metrics::counter!("hotline_sip_connections_closed_total", "reason" => expiry.as_str())
                    .increment(1);
                debug!(%peer, reason = expiry.as_str(), "tcp connection closed");
                break;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut messages = 0;
        loop {
            match frame(&buf) {
                Framing::Incomplete => {
                    if buf.len() > max_message {
                        metrics::counter!("hotline_sip_messages_too_large_total", "transport" => "tcp")
                            .increment(1);
                        warn!(%peer, "tcp message too large; closing");
                        break 'read;
                    }
                    break;
                }
                Framing::Skip(n) => {
                    crlf += n;
                    buf.drain(..n);
                    if crlf >= 4 {
                        crlf = 0;
                        let _ = pong.try_send(Arc::from(&b"\r\n"[..]));
                    }
                }
                Framing::Message(n) if n > max_message => {
                    metrics::counter!("hotline_sip_messages_too_large_total", "transport" => "tcp")
                        .increment(1);
                    warn!(%peer, "tcp message too large; closing");
                    break 'read;
                }
                Framing::Message(n) => {
                    crlf = 0;
                    messages += 1;
                    let bytes: Vec<u8> = buf.drain(..n).collect();
                    let from = Target {
                        transport,
                        addr: peer,
                    };
                    if to_core
                        .send(Inbound::Message { bytes, from })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
            }
        }
        clock.on_read(Instant::now(), messages, !buf.is_empty());
    }
    write_task.abort();
    let _ = to_core.send(Inbound::TcpClosed { peer }).await;
}

/// Where the HTTP listener hands over SIP over WebSocket (RFC 7118):
/// cheap to clone.
#[derive(Debug, Clone)]
pub struct WebSocketDoor {
    pub(super) to_core: mpsc::Sender<Inbound>,
    pub(super) max_message: usize,
}

impl WebSocketDoor {
    /// Serves one WebSocket connection from `peer`: each frame in `frames`
    /// is one SIP message (RFC 7118 §5), and what the core sends goes out
    /// through `out`, one message a frame. Returns when `frames` ends.
    pub async fn serve(
        &self,
        peer: SocketAddr,
        mut frames: mpsc::Receiver<Vec<u8>>,
        out: mpsc::Sender<Arc<[u8]>>,
    ) {
        let opened = Inbound::TcpOpened {
            peer,
            writer: out,
            // Kept while open: the page closes it, not an idle timer.
            in_use: Arc::new(AtomicBool::new(true)),
            transport: Transport::Ws,
        };
        if self.to_core.send(opened).await.is_err() {
            return;
        }
        while let Some(bytes) = frames.recv().await {
            if bytes.len() > self.max_message {
                metrics::counter!("hotline_sip_messages_too_large_total", "transport" => "ws")
                    .increment(1);
                warn!(%peer, "websocket message too large; closing");
                break;
            }
            // Keep-alives (CRLF) need no answer.
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let from = Target {
                transport: Transport::Ws,
                addr: peer,
            };
            if self
                .to_core
                .send(Inbound::Message { bytes, from })
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = self.to_core.send(Inbound::TcpClosed { peer }).await;
    }
}

/// How much of a stream buffer forms the next message.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    Incomplete,
    /// Leading CRLF keep-alives to discard.
    Skip(usize),
    /// A whole message of this many bytes.
    Message(usize),
}

/// Splits a stream on header end plus Content-Length (RFC 3261 §18.3).
pub fn frame(buf: &[u8]) -> Framing {
    let lead = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if lead > 0 {
        return Framing::Skip(lead);
    }
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Framing::Incomplete;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut length = 0usize;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                // A bad length is left to the parser to answer with 400.
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    // A huge declared length must not wrap: it just never completes, and
    // the connection is closed once the buffer passes the size limit.
    let total = (head_end + 4).saturating_add(length);
    if buf.len() >= total {
        Framing::Message(total)
    } else {
        Framing::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stream_messages() {
        assert_eq!(frame(b"\r\n\r\nOPTIONS"), Framing::Skip(4));
        assert_eq!(
            frame(b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nab"),
            Framing::Incomplete
        );
        let msg = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcNEXT";
        assert_eq!(frame(msg), Framing::Message(msg.len() - 4));
        let huge = b"OPTIONS sip:a SIP/2.0\r\nl: 18446744073709551615\r\n\r\nab";
        assert_eq!(frame(huge), Framing::Incomplete);
    }
}
