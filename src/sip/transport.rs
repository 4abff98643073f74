//! SIP over UDP and TCP: sockets, stream framing, and handing raw messages to
//! the SIP core. Parsing happens in the core so a malformed message can be
//! answered with `400`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::transaction::{Target, Transport};

/// Largest SIP message accepted on a stream; bigger ones close the connection.
const MAX_STREAM_MESSAGE: usize = 64 * 1024;

/// What the transports hand to the SIP core.
#[derive(Debug)]
pub enum Inbound {
    Message {
        bytes: Vec<u8>,
        from: Target,
    },
    TcpOpened {
        peer: SocketAddr,
        writer: mpsc::Sender<Arc<[u8]>>,
    },
    TcpClosed {
        peer: SocketAddr,
    },
}

/// Receives datagrams forever and forwards each one.
pub async fn run_udp(socket: Arc<UdpSocket>, to_core: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
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

/// Accepts TCP connections forever.
pub async fn run_tcp(listener: TcpListener, to_core: mpsc::Sender<Inbound>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let to_core = to_core.clone();
                tokio::spawn(serve_tcp(stream, peer, to_core));
            }
            Err(e) => {
                warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp(stream: TcpStream, peer: SocketAddr, to_core: mpsc::Sender<Inbound>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(256);
    if to_core
        .send(Inbound::TcpOpened { peer, writer: tx })
        .await
        .is_err()
    {
        return;
    }
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame(&buf) {
                Framing::Incomplete => {
                    if buf.len() > MAX_STREAM_MESSAGE {
                        warn!(%peer, "tcp message too large; closing");
                        break 'read;
                    }
                    break;
                }
                Framing::Skip(n) => {
                    buf.drain(..n);
                }
                Framing::Message(n) => {
                    let bytes: Vec<u8> = buf.drain(..n).collect();
                    let from = Target {
                        transport: Transport::Tcp,
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
    }
    write_task.abort();
    let _ = to_core.send(Inbound::TcpClosed { peer }).await;
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
