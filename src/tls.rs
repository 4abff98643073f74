//! TLS with rustls, for SIP (RFC 3261 §26, RFC 5922) and the HTTP
//! listener alike: a listener's certificate (reloadable on SIGHUP), and
//! the client side that checks a trunk's certificate against its SIP
//! domain (the proxy URI's host, not the SRV target's name) with the
//! trunk's CA file or the system's roots.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The server side from a PEM certificate chain and its key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(Arc::new(config))
}

/// The client side: roots from `ca_file`, or the system's.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            for c in certificates(file)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name a peer's certificate must carry: the SIP domain (RFC 5922).
pub fn server_name(domain: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(domain.trim_matches(['[', ']']).to_owned()).ok()
}

/// A connector for one trunk.
pub fn connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}

/// The listener's acceptor, replaced when the certificate is reloaded.
#[derive(Clone)]
pub struct Acceptor {
    /// Which listener (`sip`, `http`), for the log and the metric.
    listener: &'static str,
    current: Arc<RwLock<TlsAcceptor>>,
    cert: PathBuf,
    key: PathBuf,
}

impl Acceptor {
    pub fn load(listener: &'static str, cert: &Path, key: &Path) -> Result<Acceptor, String> {
        let config = server_config(cert, key)?;
        Ok(Acceptor {
            listener,
            current: Arc::new(RwLock::new(TlsAcceptor::from(config))),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The acceptor new connections use now.
    pub fn get(&self) -> Option<TlsAcceptor> {
        self.current.read().ok().map(|a| a.clone())
    }

    /// The server side of a handshake on `stream`, within `within`: a
    /// handshake that never ends holds a place in the connection budget no
    /// longer than a message may take. A failure is counted
    /// (`hotline_{sip,http}_tls_handshakes_failed_total{reason}`) and is None.
    pub async fn handshake<IO>(
        &self,
        stream: IO,
        within: Duration,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = self.get()?;
        let metric = match self.listener {
            "sip" => "hotline_sip_tls_handshakes_failed_total",
            _ => "hotline_http_tls_handshakes_failed_total",
        };
        match tokio::time::timeout(within, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                metrics::counter!(metric, "reason" => "error").increment(1);
                debug!(listener = self.listener, %peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics::counter!(metric, "reason" => "timeout").increment(1);
                debug!(listener = self.listener, %peer, "TLS handshake did not complete in time; closed");
                None
            }
        }
    }

    /// Reads the certificate and key again (a renewed certificate): new
    /// connections use it; on an error the old one stays, and says why.
    pub fn reload(&self) {
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                if let Ok(mut a) = self.current.write() {
                    *a = TlsAcceptor::from(config);
                }
                info!(listener = self.listener, cert = %self.cert.display(), "TLS certificate reloaded");
                metrics::counter!("hotline_tls_reloads_total", "listener" => self.listener, "result" => "ok")
                    .increment(1);
            }
            Err(e) => {
                warn!(listener = self.listener, error = %e, "TLS certificate not reloaded; the previous one stays");
                metrics::counter!("hotline_tls_reloads_total", "listener" => self.listener, "result" => "error")
                    .increment(1);
            }
        }
    }
}

/// Reloads the acceptor's certificate on each SIGHUP.
pub fn reload_on_sighup(acceptor: Acceptor) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            acceptor.reload();
        }
    });
}
