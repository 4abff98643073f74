//! Addresses given per family: `sip.listen`, `sip.advertise`, `rtp.bind`
//! and `rtp.advertise` take one address or a list with at most one IPv4
//! and one IPv6 address (a dual-stack engine). The first is the primary
//! (what the engine uses when it has no peer to match); otherwise the one
//! of the peer's family is used.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer};

/// What has an IP address (and so a family).
pub trait Addressed: Copy {
    fn ip_of(&self) -> IpAddr;
}

impl Addressed for IpAddr {
    fn ip_of(&self) -> IpAddr {
        *self
    }
}

impl Addressed for SocketAddr {
    fn ip_of(&self) -> IpAddr {
        self.ip()
    }
}

/// One address, or one per family, the primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerFamily<T>(Vec<T>);

impl<T: Addressed> PerFamily<T> {
    /// A single address.
    pub fn one(a: T) -> PerFamily<T> {
        PerFamily(vec![a])
    }

    /// From a list: at least one, at most one per family.
    pub fn new(list: Vec<T>) -> Result<PerFamily<T>, String> {
        if list.is_empty() {
            return Err("an empty list (one address, or one per family)".into());
        }
        let v6 = list.iter().filter(|a| a.ip_of().is_ipv6()).count();
        if v6 > 1 || list.len() - v6 > 1 {
            return Err("two addresses of one family (at most one IPv4 and one IPv6)".into());
        }
        Ok(PerFamily(list))
    }

    pub fn primary(&self) -> T {
        self.0[0]
    }

    /// The address of `peer`'s family, if there is one.
    pub fn of_family(&self, peer: IpAddr) -> Option<T> {
        self.0
            .iter()
            .copied()
            .find(|a| a.ip_of().is_ipv6() == peer.is_ipv6())
    }

    /// The address of `peer`'s family, else the primary.
    pub fn pick(&self, peer: IpAddr) -> T {
        self.of_family(peer).unwrap_or(self.primary())
    }

    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.0.iter().copied()
    }

    /// Replaces the primary (a command-line override), keeping the other
    /// family's address if it differs.
    pub fn set_primary(&mut self, a: T) {
        self.0
            .retain(|x| x.ip_of().is_ipv6() != a.ip_of().is_ipv6());
        self.0.insert(0, a);
    }
}

impl<'de, T> Deserialize<'de> for PerFamily<T>
where
    T: Addressed + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, PartialEq)]
        #[serde(untagged)]
        enum Raw<T> {
            One(T),
            Many(Vec<T>),
        }
        let list = match Raw::<T>::deserialize(d)? {
            Raw::One(a) => vec![a],
            Raw::Many(l) => l,
        };
        PerFamily::new(list).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_or_one_per_family_and_the_peers_family_is_picked() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let both = PerFamily::new(vec![v4, v6]).unwrap();
        assert_eq!(both.primary(), v4);
        assert_eq!(both.pick("2001:db8::9".parse().unwrap()), v6);
        assert_eq!(both.pick("198.51.100.7".parse().unwrap()), v4);
        let only4 = PerFamily::one(v4);
        assert_eq!(only4.of_family(v6), None);
        assert_eq!(only4.pick(v6), v4, "no IPv6 address: the primary");
        assert!(PerFamily::new(vec![v4, v4]).is_err());
        assert!(PerFamily::<IpAddr>::new(vec![]).is_err());
        let mut moved = both.clone();
        moved.set_primary("2001:db8::2".parse().unwrap());
        assert_eq!(
            moved.iter().collect::<Vec<_>>(),
            ["2001:db8::2".parse::<IpAddr>().unwrap(), v4]
        );
    }
}
