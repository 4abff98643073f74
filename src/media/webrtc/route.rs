//! Which browser leg a datagram on the shared WebRTC port belongs to. A
//! leg's first packets are ICE checks whose STUN USERNAME starts with our
//! ufrag for it; DTLS and SRTP carry no username, so once a check names
//! a leg its source address and port are that leg's. Pure: the hub's task
//! owns one.

use std::collections::HashMap;
use std::net::SocketAddr;

/// STUN's magic cookie (RFC 5389 §6).
const MAGIC: u32 = 0x2112_A442;
/// The USERNAME attribute.
const USERNAME: u16 = 0x0006;

/// A leg learns at most this many addresses (a browser checks from its
/// host, server-reflexive and relayed candidates): a forged check naming a
/// leg cannot grow the table past it.
pub const MAX_ADDRS_PER_LEG: usize = 8;

/// The local part (our ufrag) of a STUN message's USERNAME
/// (`OURS:THEIRS`), or `None` for anything else.
pub fn stun_ufrag(packet: &[u8]) -> Option<&str> {
    let header = packet.get(..20)?;
    // The top two bits of a STUN message are zero; the cookie is fixed.
    if header[0] & 0xc0 != 0
        || u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC
    {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let body = packet.get(20..20 + len)?;
    let mut at = 0;
    while let Some(attr) = body.get(at..at + 4) {
        let kind = u16::from_be_bytes([attr[0], attr[1]]);
        let n = usize::from(u16::from_be_bytes([attr[2], attr[3]]));
        let value = body.get(at + 4..at + 4 + n)?;
        if kind == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next().filter(|u| !u.is_empty());
        }
        // Values are padded to four bytes.
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

struct Leg<T> {
    ufrag: String,
    target: T,
    addrs: Vec<SocketAddr>,
}

/// The routing table: legs by id, found by ufrag or learned address.
pub struct Router<T> {
    legs: HashMap<u64, Leg<T>>,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            legs: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }
}

impl<T> Router<T> {
    /// Adds a leg; `false` (and nothing changes) when its ufrag is taken.
    pub fn add(&mut self, id: u64, ufrag: &str, target: T) -> bool {
        if self.by_ufrag.contains_key(ufrag) || self.legs.contains_key(&id) {
            return false;
        }
        self.by_ufrag.insert(ufrag.to_owned(), id);
        self.legs.insert(
            id,
            Leg {
                ufrag: ufrag.to_owned(),
                target,
                addrs: Vec::new(),
            },
        );
        true
    }

    /// Forgets a leg and every address it learned.
    pub fn remove(&mut self, id: u64) {
        if let Some(leg) = self.legs.remove(&id) {
            self.by_ufrag.remove(&leg.ufrag);
            for a in leg.addrs {
                self.by_addr.remove(&a);
            }
        }
    }

    /// Removes the legs `gone` says are gone (their receivers dropped).
    pub fn sweep(&mut self, gone: impl Fn(&T) -> bool) {
        let dead: Vec<u64> = self
            .legs
            .iter()
            .filter(|(_, l)| gone(&l.target))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove(id);
        }
    }

    /// The leg `packet` from `from` is for: a check naming a leg's ufrag
    /// teaches its address, unless another live leg has it (a forged check
    /// cannot take a leg's media away); anything else goes by address or
    /// nowhere.
    pub fn route(&mut self, packet: &[u8], from: SocketAddr) -> Option<(u64, &T)> {
        if let Some(id) = stun_ufrag(packet)
            .and_then(|u| self.by_ufrag.get(u))
            .copied()
        {
            self.learn(id, from);
            return self.legs.get(&id).map(|l| (id, &l.target));
        }
        let id = *self.by_addr.get(&from)?;
        self.legs.get(&id).map(|l| (id, &l.target))
    }

    fn learn(&mut self, id: u64, from: SocketAddr) {
        if self.by_addr.contains_key(&from) {
            return;
        }
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.addrs.len() >= MAX_ADDRS_PER_LEG {
            return;
        }
        leg.addrs.push(from);
        self.by_addr.insert(from, id);
    }

    pub fn len(&self) -> usize {
        self.legs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A SOFTWARE attribute first, padded, to check the walk.
        attrs.extend_from_slice(&0x8022u16.to_be_bytes());
        attrs.extend_from_slice(&5u16.to_be_bytes());
        attrs.extend_from_slice(b"webrt\0\0\0");
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_check_names_the_leg_and_teaches_its_address_for_dtls_and_srtp() {
        let mut r = Router::default();
        assert!(r.add(1, "ours1", "a"));
        assert!(r.add(2, "ours2", "b"));
        // DTLS from an address nobody checked from goes nowhere.
        assert!(r.route(&[22, 254, 253], addr(5000)).is_none());
        assert_eq!(
            r.route(&binding_request("ours2:theirs"), addr(5000))
                .map(|x| x.0),
            Some(2)
        );
        assert_eq!(r.route(&[22, 254, 253], addr(5000)).map(|x| x.0), Some(2));
        assert_eq!(
            r.route(&[0x80, 0, 0, 1], addr(5000)).map(|x| *x.1),
            Some("b")
        );
        // Another port of the same host is another peer.
        assert!(r.route(&[22, 254, 253], addr(5001)).is_none());
    }

    #[test]
    fn an_unknown_ufrag_or_garbage_routes_nowhere_and_learns_nothing() {
        let mut r = Router::default();
        r.add(1, "ours1", ());
        assert!(r
            .route(&binding_request("nobody:theirs"), addr(1))
            .is_none());
        assert!(r
            .route(&[0x00, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42], addr(1))
            .is_none());
        assert!(r.route(&binding_request(":x"), addr(1)).is_none());
        let mut truncated = binding_request("ours1:theirs");
        truncated.truncate(30);
        assert!(r.route(&truncated, addr(1)).is_none());
        assert!(r.route(&[0x80; 40], addr(1)).is_none());
    }

    #[test]
    fn a_removed_leg_forgets_its_ufrag_and_addresses() {
        let mut r = Router::default();
        r.add(1, "ours1", ());
        r.route(&binding_request("ours1:t"), addr(1));
        r.remove(1);
        assert!(r.route(&[0x80; 12], addr(1)).is_none());
        assert!(r.route(&binding_request("ours1:t"), addr(1)).is_none());
        assert!(r.is_empty());
        // The ufrag can be used again.
        assert!(r.add(3, "ours1", ()));
    }

    #[test]
    fn a_taken_ufrag_is_refused() {
        let mut r = Router::default();
        assert!(r.add(1, "same", ()));
        assert!(!r.add(2, "same", ()));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn forged_checks_cannot_grow_a_leg_past_its_bound() {
        let mut r = Router::default();
        r.add(1, "ours1", ());
        for port in 0..100 {
            r.route(&binding_request("ours1:x"), addr(port));
        }
        let learned = (0..100)
            .filter(|&p| r.route(&[0x80; 12], addr(p)).is_some())
            .count();
        assert_eq!(learned, MAX_ADDRS_PER_LEG);
    }

    #[test]
    fn a_check_naming_another_leg_cannot_take_an_address_a_live_leg_has() {
        let mut r = Router::default();
        r.add(1, "one", ());
        r.add(2, "two", ());
        r.route(&binding_request("one:x"), addr(9));
        // The check itself reaches the leg it names (whose ICE refuses it
        // unless it is signed with that leg's password)...
        assert_eq!(
            r.route(&binding_request("two:x"), addr(9)).map(|x| x.0),
            Some(2)
        );
        // ...but the address stays the first leg's.
        assert_eq!(r.route(&[0x80; 12], addr(9)).map(|x| x.0), Some(1));
        // Once that leg is gone, a check moves it.
        r.remove(1);
        r.route(&binding_request("two:x"), addr(9));
        assert_eq!(r.route(&[0x80; 12], addr(9)).map(|x| x.0), Some(2));
    }

    #[test]
    fn closed_legs_are_swept() {
        let mut r = Router::default();
        r.add(1, "one", true);
        r.add(2, "two", false);
        r.sweep(|gone| *gone);
        assert_eq!(r.len(), 1);
        assert!(r.route(&binding_request("two:x"), addr(1)).is_some());
    }
}
