//! Starting the SIP layer: its listeners (UDP, TCP, TLS, per family), the
//! registrar with the contacts kept from before a restart, and the core task.

use super::*;

/// Binds the transports and starts the SIP core task.
/// Starts the SIP layer. `restored` are agents' contacts kept from before
/// a restart: the registrar takes them back (those not expired) and they
/// are published like fresh registrations.
pub async fn start(
    config: Arc<Config>,
    restored: Vec<Registration>,
    admission: Arc<crate::overload::Admission>,
) -> Result<SipLayer, SipError> {
    let listen = config.sip.listen.primary();
    let core_max_message = config.sip.max_message_size;
    let (in_tx, in_rx) = mpsc::channel(8192);
    // One UDP socket and TCP listener per address (a dual-stack engine has
    // an IPv4 and an IPv6 one); what each is bound to, as put in Via and
    // Contact towards a peer of its family.
    let mut udp = Vec::new();
    let mut locals = Vec::new();
    let (mut udp_addrs, mut tcp_addrs) = (Vec::new(), Vec::new());
    for listen in config.sip.listen.iter() {
        let mut bound = None;
        if config.sip.udp {
            let socket = UdpSocket::bind(listen)
                .await
                .map_err(|source| SipError::Bind {
                    transport: "UDP",
                    addr: listen,
                    source,
                })?;
            bound = socket.local_addr().ok();
            udp_addrs.extend(bound);
            let socket = Arc::new(socket);
            tokio::spawn(transport::run_udp(
                socket.clone(),
                in_tx.clone(),
                config.sip.max_message_size,
            ));
            udp.push(socket);
        }
        if config.sip.tcp {
            // With port 0, TCP takes the port UDP was given.
            let addr = bound.unwrap_or(listen);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SipError::Bind {
                    transport: "TCP",
                    addr,
                    source,
                })?;
            tcp_addrs.extend(listener.local_addr().ok());
            bound = bound.or(listener.local_addr().ok());
            tokio::spawn(transport::run_tcp(
                listener,
                in_tx.clone(),
                config.sip.connections,
                config.sip.max_message_size,
                None,
            ));
        }
        let port = bound.map_or(listen.port(), |a| a.port());
        locals.push(SocketAddr::new(config.sip_address_for(listen.ip()), port));
    }
    let locals = crate::config::PerFamily::new(locals).map_err(SipError::Listen)?;
    let mut tls_addr = None;
    if let Some(t) = &config.sip.tls {
        let acceptor = crate::tls::Acceptor::load("sip", &t.cert, &t.key).map_err(SipError::Tls)?;
        let addr = t.listen.unwrap_or(SocketAddr::new(listen.ip(), 5061));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SipError::Bind {
                transport: "TLS",
                addr,
                source,
            })?;
        tls_addr = listener.local_addr().ok();
        tokio::spawn(transport::run_tcp(
            listener,
            in_tx.clone(),
            config.sip.connections,
            config.sip.max_message_size,
            Some(acceptor.clone()),
        ));
        crate::tls::reload_on_sighup(acceptor);
    }
    // A connector per TLS trunk domain, with the trunk's CA file.
    let mut tls_clients = HashMap::new();
    for trunk in &config.trunks {
        let Some(o) = &trunk.outbound else {
            continue;
        };
        let Some(uri) = SipUri::parse(&o.proxy).filter(crate::sip::trunk_client::wants_tls) else {
            continue;
        };
        let client = crate::tls::client_config(o.ca_file.as_deref())
            .map_err(|e| SipError::Tls(format!("trunk {}: {e}", trunk.name)))?;
        tls_clients.insert(uri.host.clone(), crate::tls::connector(client));
    }
    let (incoming_tx, incoming_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(crate::sip::handle::CORE_COMMANDS);
    let status = Arc::new(SipStatus::default());
    let ids = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (reg_tx, reg_rx) = mpsc::unbounded_channel();
    let config_for_registrar = config.clone();
    let servers = config.dns.server_addrs().unwrap_or_default();
    let resolver = crate::sip::dns::Resolver::new(&servers, config.dns.retry);
    let unresolved = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let dialer = Dialer {
        commands: cmd_tx.clone(),
        ids: ids.clone(),
        resolver: resolver.clone(),
        unresolved: unresolved.clone(),
    };
    let mut core = SipCore {
        locals,
        config,
        txs: Transactions::new(),
        dialogs: HashMap::new(),
        by_call: HashMap::new(),
        by_tx: HashMap::new(),
        next_dialog: ids,
        by_invite: HashMap::new(),
        udp,
        replying_to: None,
        tcp: HashMap::new(),
        incoming: incoming_tx,
        cmd_tx,
        status: status.clone(),
        admission,
        out: Vec::new(),
        events: Vec::new(),
        registrar: Registrar::new(
            &config_for_registrar.registrar,
            &config_for_registrar.agents,
        ),
        registrations: reg_tx,
        keepalives: HashMap::new(),
        pings: HashMap::new(),
        next_keepalive: now(),
        trunk_clients: Vec::new(),
        trunk_txs: HashMap::new(),
        caps: crate::sip::limits::CallCaps::default(),
        sources: crate::sip::limits::SourceLimit::new(
            config_for_registrar.sip.rate_limit.requests,
            config_for_registrar.sip.rate_limit.per,
            config_for_registrar.sip.rate_limit.block,
        ),
        refreshes: HashMap::new(),
        resolver: resolver.clone(),
        tls_local: tls_addr.map(|a| SocketAddr::new(config_for_registrar.sip_address(), a.port())),
        inbound_tx: in_tx.clone(),
        tls_peers: HashMap::new(),
        connecting: HashMap::new(),
        tls_clients,
        unresolved,
        locators: HashMap::new(),
    };
    for trunk in core.config.trunks.clone() {
        core.locate(&trunk);
    }
    // The calls the caps refuse, counted from 0 (an alert sees the first).
    for r in crate::sip::limits::Refused::ALL {
        metrics::counter!("hotline_calls_refused_total", "reason" => r.as_str()).increment(0);
    }
    for r in restored {
        if core.registrar.restore(&r.agent, r.contacts, now()) {
            info!(agent = %r.agent, "registration restored");
            core.publish(&r.agent);
        }
    }
    tokio::spawn(core.run(in_rx, cmd_rx));
    Ok(SipLayer {
        websockets: crate::sip::transport::WebSocketDoor {
            to_core: in_tx.clone(),
            max_message: core_max_message,
        },
        incoming: incoming_rx,
        dialer,
        registrations: reg_rx,
        status,
        udp_addrs,
        tcp_addrs,
        tls_addr,
    })
}
