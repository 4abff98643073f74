//! SDES (RFC 4568): the `a=crypto` lines that carry SRTP keys in SDP, and
//! the choice of one. Pure: keys are drawn with the operating system's
//! random source, nothing else is touched.

use base64::Engine as _;

use crate::config::MediaEncryption;

/// The SRTP crypto suites we speak, in our order of preference for an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
}

impl Suite {
    /// What we offer, best first.
    pub const OFFERED: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    pub fn parse(name: &str) -> Option<Suite> {
        [
            Suite::AesCm128HmacSha1_80,
            Suite::AesCm128HmacSha1_32,
            Suite::AeadAes128Gcm,
            Suite::AeadAes256Gcm,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub fn key_len(self) -> usize {
        match self {
            Suite::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    pub fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 12,
            _ => 14,
        }
    }
}

/// A master key and salt (key first), as `inline:` carries them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeySalt {
    bytes: [u8; 46],
    len: u8,
}

impl std::fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never in a log.
        write!(f, "KeySalt(<{} bytes>)", self.len)
    }
}

impl KeySalt {
    /// A fresh key for `suite`.
    pub fn random(suite: Suite) -> KeySalt {
        let mut bytes = [0u8; 46];
        let len = suite.key_len() + suite.salt_len();
        rand::fill(&mut bytes[..len]);
        KeySalt {
            bytes,
            len: len as u8,
        }
    }

    fn from_bytes(raw: &[u8], suite: Suite) -> Option<KeySalt> {
        if raw.len() != suite.key_len() + suite.salt_len() {
            return None;
        }
        let mut bytes = [0u8; 46];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(KeySalt {
            bytes,
            len: raw.len() as u8,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// (master key, master salt) for `suite`.
    pub fn split(&self, suite: Suite) -> (&[u8], &[u8]) {
        self.as_bytes().split_at(suite.key_len())
    }

    fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.as_bytes())
    }
}

/// One `a=crypto` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    pub key: KeySalt,
}

/// Reads the value of an `a=crypto:` attribute. `None` for a suite we do
/// not speak, a key of the wrong size, several keys, an MKI, or session
/// parameters (such as `UNENCRYPTED_SRTP`): all things we could not honour.
pub fn parse_line(value: &str) -> Option<Crypto> {
    let mut parts = value.split_whitespace();
    let tag = parts.next()?.parse::<u32>().ok()?;
    let suite = Suite::parse(parts.next()?)?;
    let keys = parts.next()?;
    if parts.next().is_some() || keys.contains(';') {
        return None;
    }
    let inline = keys.strip_prefix("inline:")?;
    let mut fields = inline.split('|');
    let key = fields.next()?;
    for f in fields {
        // A lifetime (2^31 or a number) is fine; an MKI (n:m) is not.
        if f.contains(':') {
            return None;
        }
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key))
        .ok()?;
    Some(Crypto {
        tag,
        suite,
        key: KeySalt::from_bytes(&raw, suite)?,
    })
}

/// The `a=crypto:` line for `c` (without `a=` and line end).
pub fn line(c: &Crypto) -> String {
    format!(
        "crypto:{} {} inline:{}",
        c.tag,
        c.suite.name(),
        c.key.base64()
    )
}

/// What SRTP a leg agreed on: the suite and tag of the offer's line we
/// took, our key (we send with it) and theirs (they send with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Srtp {
    pub suite: Suite,
    pub tag: u32,
    pub local: KeySalt,
    pub remote: KeySalt,
    /// The m= line says `RTP/SAVP` (else `RTP/AVP` with `a=crypto`).
    pub savp: bool,
}

/// A leg's rule for media encryption: the configured mode, and whether
/// keys may travel in its signalling (over TLS, or when the config says
/// so in words that look dangerous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub mode: MediaEncryption,
    pub keys_allowed: bool,
}

impl Policy {
    /// A trunk's or agent's rule: `mode`, with keys allowed over TLS
    /// (`secure`) or where the config accepts them in clear.
    pub fn of(mode: MediaEncryption, insecure_keys: bool, secure: bool) -> Policy {
        Policy {
            mode,
            keys_allowed: secure || insecure_keys,
        }
    }

    /// The rule of calls over the trunk named `trunk` (from it, or placed
    /// over it); `secure`: the signalling is over TLS.
    pub fn for_trunk(config: &crate::config::Config, trunk: &str, secure: bool) -> Policy {
        config
            .trunks
            .iter()
            .find(|t| t.name == trunk)
            .map_or(Policy::NONE, |t| {
                Policy::of(
                    t.media_encryption,
                    t.insecure_media_keys_over_plain_sip,
                    secure,
                )
            })
    }

    /// The rule towards `agent`'s phone; `tls`: reached over TLS.
    pub fn for_agent(config: &crate::config::Config, agent: &str, tls: bool) -> Policy {
        config
            .agents
            .iter()
            .find(|a| a.id == agent)
            .map_or(Policy::NONE, |a| {
                Policy::of(
                    a.media_encryption,
                    a.insecure_media_keys_over_plain_sip,
                    tls,
                )
            })
    }

    /// The rule of a transfer to `uri`: that of the trunk whose outbound
    /// proxy is the URI's host (a number dialled out over it, keys only
    /// when the URI is reached over TLS or the trunk says so); else SRTP
    /// offered (`optional`) when the URI is reached over TLS, plain RTP
    /// when not.
    pub fn for_transfer(config: &crate::config::Config, uri: &str) -> Policy {
        use crate::uri::SipUri;
        let Some(target) = SipUri::parse(uri) else {
            return Policy::NONE;
        };
        let tls = target.scheme == "sips"
            || target
                .params
                .value("transport")
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let trunk = config.trunks.iter().find(|t| {
            t.outbound
                .as_ref()
                .and_then(|o| SipUri::parse(&o.proxy))
                .is_some_and(|p| p.host.eq_ignore_ascii_case(&target.host))
        });
        match trunk {
            Some(t) => Policy::of(
                t.media_encryption,
                t.insecure_media_keys_over_plain_sip,
                tls,
            ),
            None if tls => Policy::of(MediaEncryption::Optional, false, true),
            None => Policy::NONE,
        }
    }

    /// Plain RTP, whatever is offered.
    pub const NONE: Policy = Policy {
        mode: MediaEncryption::None,
        keys_allowed: false,
    };

    /// Whether this leg may use SRTP at all.
    pub fn may_encrypt(&self) -> bool {
        self.mode != MediaEncryption::None && self.keys_allowed
    }
}

/// Why an offer's encryption cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoRefusal {
    #[error("SRTP is required and the offer has no usable a=crypto line")]
    Required,
    #[error("SRTP is required but its keys would travel unprotected (not over TLS)")]
    KeysInClear,
    #[error(
        "the offer is RTP/SAVP and SRTP is not enabled (media-encryption: none, or not over TLS)"
    )]
    Unwanted,
}

/// Answers an offer's encryption (RFC 4568 §6.1): the first of its usable
/// lines, with a fresh key of ours, when the policy allows SRTP. `None`:
/// plain RTP.
pub fn answer_offer(
    savp: bool,
    offered: &[Crypto],
    policy: Policy,
    local: Option<KeySalt>,
) -> Result<Option<Srtp>, CryptoRefusal> {
    if policy.mode == MediaEncryption::Required && !policy.keys_allowed {
        return Err(CryptoRefusal::KeysInClear);
    }
    let chosen = offered.first().filter(|_| policy.may_encrypt());
    match chosen {
        Some(c) => Ok(Some(Srtp {
            suite: c.suite,
            tag: c.tag,
            local: local
                .filter(|k| k.as_bytes().len() == c.suite.key_len() + c.suite.salt_len())
                .unwrap_or_else(|| KeySalt::random(c.suite)),
            remote: c.key,
            savp,
        })),
        None if policy.mode == MediaEncryption::Required => Err(CryptoRefusal::Required),
        None if savp => Err(CryptoRefusal::Unwanted),
        None => Ok(None),
    }
}

/// Our offer's `a=crypto` lines (one per suite we offer, the same key
/// length for both) and whether the m= line says `RTP/SAVP`; nothing
/// when the policy does not allow SRTP.
pub fn offer_lines(policy: Policy, key: KeySalt) -> (Vec<Crypto>, bool) {
    if !policy.may_encrypt() {
        return (Vec::new(), false);
    }
    let lines = Suite::OFFERED
        .iter()
        .enumerate()
        .map(|(i, &suite)| Crypto {
            tag: i as u32 + 1,
            suite,
            key,
        })
        .collect();
    (lines, policy.mode == MediaEncryption::Required)
}

/// The answer to our offer: the line it took (matched by tag and suite)
/// and its key. `Err` when SRTP is required and the answer has none.
pub fn accept_answer(
    answered: &[Crypto],
    ours: &[Crypto],
    savp: bool,
    policy: Policy,
) -> Result<Option<Srtp>, CryptoRefusal> {
    let taken = answered.iter().find_map(|a| {
        ours.iter()
            .find(|o| o.tag == a.tag && o.suite == a.suite)
            .map(|o| Srtp {
                suite: a.suite,
                tag: a.tag,
                local: o.key,
                remote: a.key,
                savp,
            })
    });
    match taken {
        Some(s) => Ok(Some(s)),
        None if policy.mode == MediaEncryption::Required => Err(CryptoRefusal::Required),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn policy(mode: MediaEncryption, keys_allowed: bool) -> Policy {
        Policy { mode, keys_allowed }
    }

    #[test]
    fn lines_parse_and_print_back_and_what_we_cannot_honour_is_skipped() {
        let c = parse_line(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")).unwrap();
        assert_eq!((c.tag, c.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(c.key.as_bytes().len(), 30);
        assert_eq!(
            line(&c),
            format!("crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")
        );
        assert_eq!(parse_line(&line(&c)["crypto:".len()..]), Some(c));
        // An MKI, session parameters, an unknown suite, a short key.
        assert!(parse_line(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4")).is_none());
        assert!(parse_line(&format!(
            "1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"
        ))
        .is_none());
        assert!(parse_line(&format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}")).is_none());
        assert!(parse_line("1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=").is_none());
        assert!(parse_line("x").is_none());
        // Keys never reach a log.
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn a_transfer_follows_the_trunk_it_is_dialled_over_else_tls_offers_keys() {
        let config = crate::config::Config::parse(concat!(
            "trunks:\n  - name: carrier\n    allow: []\n    media-encryption: required\n",
            "    outbound: { proxy: 'sip:sbc.carrier.test;transport=tls' }\n",
        ))
        .unwrap();
        let p = Policy::for_transfer(&config, "sip:+12025550100@SBC.carrier.test;transport=tls");
        assert_eq!((p.mode, p.keys_allowed), (MediaEncryption::Required, true));
        // The carrier's rule, but no keys in the clear.
        let p = Policy::for_transfer(&config, "sip:+12025550100@sbc.carrier.test");
        assert_eq!((p.mode, p.keys_allowed), (MediaEncryption::Required, false));
        let p = Policy::for_transfer(&config, "sips:desk@pbx.example.test");
        assert_eq!((p.mode, p.keys_allowed), (MediaEncryption::Optional, true));
        assert_eq!(
            Policy::for_transfer(&config, "sip:desk@pbx.example.test"),
            Policy::NONE
        );
        assert_eq!(Policy::for_transfer(&config, "not a uri"), Policy::NONE);
    }

    #[test]
    fn an_offer_is_answered_by_the_policy() {
        let offered = [parse_line(&format!("3 AES_CM_128_HMAC_SHA1_32 inline:{KEY}")).unwrap()];
        // Optional, over TLS: the first line, with a key of ours.
        let s = answer_offer(
            false,
            &offered,
            policy(MediaEncryption::Optional, true),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.tag, s.suite, s.savp),
            (3, Suite::AesCm128HmacSha1_32, false)
        );
        assert_eq!(s.remote, offered[0].key);
        assert_ne!(s.local, offered[0].key);
        // Not over TLS: plain RTP for an AVP offer; SAVP cannot be answered.
        assert_eq!(
            answer_offer(
                false,
                &offered,
                policy(MediaEncryption::Optional, false),
                None
            ),
            Ok(None)
        );
        assert_eq!(
            answer_offer(
                true,
                &offered,
                policy(MediaEncryption::Optional, false),
                None
            ),
            Err(CryptoRefusal::Unwanted)
        );
        // Required: without keys allowed, or without crypto offered: refused.
        assert_eq!(
            answer_offer(
                true,
                &offered,
                policy(MediaEncryption::Required, false),
                None
            ),
            Err(CryptoRefusal::KeysInClear)
        );
        assert_eq!(
            answer_offer(false, &[], policy(MediaEncryption::Required, true), None),
            Err(CryptoRefusal::Required)
        );
        // None: plain, even when crypto is offered over AVP.
        assert_eq!(answer_offer(false, &offered, Policy::NONE, None), Ok(None));
        // A key we already use on the call is kept.
        let ours = KeySalt::random(Suite::AesCm128HmacSha1_32);
        let s = answer_offer(
            true,
            &offered,
            policy(MediaEncryption::Required, true),
            Some(ours),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.local, ours);
    }

    #[test]
    fn our_offer_and_its_answer() {
        let key = KeySalt::random(Suite::AesCm128HmacSha1_80);
        let (lines, savp) = offer_lines(policy(MediaEncryption::Required, true), key);
        assert!(savp);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            offer_lines(policy(MediaEncryption::Optional, false), key)
                .0
                .len(),
            0
        );
        let theirs = Crypto {
            tag: 2,
            suite: Suite::AesCm128HmacSha1_32,
            key: KeySalt::random(Suite::AesCm128HmacSha1_32),
        };
        let s = accept_answer(
            &[theirs],
            &lines,
            true,
            policy(MediaEncryption::Required, true),
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.tag, s.local, s.remote), (2, key, theirs.key));
        assert_eq!(
            accept_answer(&[], &lines, false, policy(MediaEncryption::Required, true)),
            Err(CryptoRefusal::Required)
        );
        assert_eq!(
            accept_answer(&[], &lines, false, policy(MediaEncryption::Optional, true)),
            Ok(None)
        );
    }
}
