//! SRTP (RFC 3711) on one leg, with the keys SDES agreed: webrtc-rs's
//! `rtc-srtp` (ring underneath), the implementation the browser-agent
//! work will use too. Prompts stay encoded once; each packet is
//! protected on its way out.
//!
//! The sending side of the AES-CM suites, 50 packets a second on every
//! leg, is the hot path: [`Sealer`] does it in place with the session keys
//! derived once, an AES key schedule and an HMAC keyed once (rtc-srtp's
//! 0.21 builds both again for every packet and allocates its output:
//! +37 % CPU at 1,000 calls). Its output is byte for byte rtc-srtp's
//! (tested); the receiving side, the replay window and the AEAD suites
//! stay with rtc-srtp.

use std::sync::{Arc, OnceLock};

use rtc_crypto::RTCCryptoProvider;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

use aes::cipher::{InnerIvInit, KeyInit, KeyIvInit, StreamCipher};
use hmac::Mac;

use crate::sdp::crypto::{Srtp, Suite};

type AesCtr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// RFC 3711 §4.3.1, key derivation rate 0: the session key, salt or
/// authentication key (`label` 0, 2 or 1) from the master key and salt.
fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> Option<()> {
    let mut iv = [0u8; 16];
    iv.get_mut(..14)?.copy_from_slice(master_salt.get(..14)?);
    iv[7] ^= label;
    out.fill(0);
    let mut c = AesCtr::new_from_slices(master_key, &iv).ok()?;
    c.apply_keystream(out);
    Some(())
}

/// Protects our own RTP packets (AES-CM 128 with HMAC-SHA1-80 or -32)
/// into a buffer of the caller's, with nothing allocated per packet.
pub struct Sealer {
    aes: aes::Aes128,
    mac: HmacSha1,
    salt: [u8; 14],
    tag_len: usize,
    /// The rollover counter and the last sequence number sent.
    roc: u32,
    last_seq: Option<u16>,
}

impl Sealer {
    /// `None` for a suite it does not do (the AEAD ones).
    pub fn new(keys: &Srtp) -> Option<Sealer> {
        let tag_len = match keys.suite {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            _ => return None,
        };
        let (master_key, master_salt) = keys.local.split(keys.suite);
        let (mut key, mut salt, mut auth) = ([0u8; 16], [0u8; 14], [0u8; 20]);
        derive(master_key, master_salt, 0, &mut key)?;
        derive(master_key, master_salt, 2, &mut salt)?;
        derive(master_key, master_salt, 1, &mut auth)?;
        Some(Sealer {
            aes: aes::Aes128::new_from_slice(&key).ok()?,
            mac: <HmacSha1 as Mac>::new_from_slice(&auth).ok()?,
            salt,
            tag_len,
            roc: 0,
            last_seq: None,
        })
    }

    /// Protects `packet` (an RTP packet of ours) into `out`.
    pub fn seal(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let header = header_len(packet)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        if let Some(last) = self.last_seq {
            // Our sequence numbers only go up: a smaller one has wrapped.
            if seq < last && last - seq > 0x8000 {
                self.roc = self.roc.wrapping_add(1);
            }
        }
        self.last_seq = Some(seq);
        let index = (u64::from(self.roc) << 16) | u64::from(seq);
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in packet[8..12].iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for k in 0..6 {
            iv[8 + k] ^= (index >> (40 - 8 * k)) as u8;
        }
        out.clear();
        out.extend_from_slice(packet);
        let core = ctr::CtrCore::<aes::Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(
            self.aes.clone(),
            &iv.into(),
        );
        let mut ctr = AesCtr::from_core(core);
        ctr.apply_keystream(&mut out[header..]);
        let mut mac = self.mac.clone();
        mac.update(out);
        mac.update(&self.roc.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(&tag[..self.tag_len]);
        Some(())
    }
}

/// The RTP header's length (fixed part, CSRCs, extension).
fn header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(len + 2)?, *packet.get(len + 3)?]);
        len += 4 + 4 * usize::from(words);
    }
    (len <= packet.len()).then_some(len)
}

fn provider() -> Option<&'static Arc<dyn RTCCryptoProvider>> {
    static PROVIDER: OnceLock<Option<Arc<dyn RTCCryptoProvider>>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| rtc_crypto::default_provider().ok())
        .as_ref()
}

fn profile(suite: Suite) -> ProtectionProfile {
    match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        Suite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
    }
}

/// One leg's two SRTP contexts: ours (we send) and the peer's (we receive,
/// with replay protection).
pub struct Session {
    pub keys: Srtp,
    /// Our packets, on the AES-CM suites.
    sealer: Option<Sealer>,
    tx: Context,
    rx: Context,
}

impl Session {
    pub fn new(keys: Srtp) -> Result<Session, String> {
        let crypto = provider().ok_or("no SRTP crypto provider")?.crypto();
        let suite = profile(keys.suite);
        let (key, salt) = keys.local.split(keys.suite);
        let tx = Context::new(key, salt, suite, None, None, crypto).map_err(|e| e.to_string())?;
        let (key, salt) = keys.remote.split(keys.suite);
        let rx = Context::new(
            key,
            salt,
            suite,
            Some(srtp_replay_protection(128)),
            Some(srtcp_replay_protection(128)),
            crypto,
        )
        .map_err(|e| e.to_string())?;
        Ok(Session {
            keys,
            sealer: Sealer::new(&keys),
            tx,
            rx,
        })
    }

    /// Protects an RTP packet into `out`; `None` if it cannot be.
    pub fn protect(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<()> {
        if let Some(s) = self.sealer.as_mut() {
            return s.seal(packet, out);
        }
        let sealed = self.tx.encrypt_rtp(packet).ok()?;
        out.clear();
        out.extend_from_slice(&sealed);
        Some(())
    }

    /// Protects an RTCP packet of ours (SRTCP, RFC 3711 §3.4).
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        Some(self.tx.encrypt_rtcp(packet).ok()?.to_vec())
    }

    /// Checks and decrypts an SRTCP packet; `None` when it fails
    /// authentication or replays one already taken.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        Some(self.rx.decrypt_rtcp(packet).ok()?.to_vec())
    }

    /// Checks and decrypts an SRTP packet in place; its new length, or
    /// `None` when it fails authentication (forged, replayed, damaged).
    pub fn unprotect(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        let plain = self.rx.decrypt_rtp(&buf[..len]).ok()?;
        let n = plain.len();
        buf.get_mut(..n)?.copy_from_slice(&plain);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::crypto::KeySalt;

    fn keys(suite: Suite) -> (Srtp, Srtp) {
        let (a, b) = (KeySalt::random(suite), KeySalt::random(suite));
        let ours = Srtp {
            suite,
            tag: 1,
            local: a,
            remote: b,
            savp: true,
        };
        let theirs = Srtp {
            local: b,
            remote: a,
            ..ours
        };
        (ours, theirs)
    }

    fn packet(seq: u16) -> Vec<u8> {
        let mut p = vec![
            0x80,
            0x00,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
            160,
            1,
            2,
            3,
            4,
        ];
        p.extend(std::iter::repeat_n(0x55u8, 160));
        p
    }

    #[test]
    fn what_one_side_protects_the_other_reads_and_forgeries_and_replays_are_refused() {
        for suite in [
            Suite::AesCm128HmacSha1_80,
            Suite::AesCm128HmacSha1_32,
            Suite::AeadAes128Gcm,
            Suite::AeadAes256Gcm,
        ] {
            let (ours, theirs) = keys(suite);
            let (mut a, mut b) = (Session::new(ours).unwrap(), Session::new(theirs).unwrap());
            let mut wire = Vec::new();
            a.protect(&packet(7), &mut wire).unwrap();
            assert_ne!(
                &wire[12..172],
                &packet(7)[12..],
                "{suite:?}: the payload is encrypted"
            );
            let mut buf = [0u8; 1500];
            buf[..wire.len()].copy_from_slice(&wire);
            let n = b.unprotect(&mut buf, wire.len()).expect("authentic");
            assert_eq!(&buf[..n], &packet(7)[..], "{suite:?}");
            // The same packet again is a replay.
            buf[..wire.len()].copy_from_slice(&wire);
            assert!(
                b.unprotect(&mut buf, wire.len()).is_none(),
                "{suite:?}: replay"
            );
            // One bit changed in the payload: refused.
            a.protect(&packet(8), &mut wire).unwrap();
            wire[20] ^= 1;
            buf[..wire.len()].copy_from_slice(&wire);
            assert!(
                b.unprotect(&mut buf, wire.len()).is_none(),
                "{suite:?}: forged"
            );
            // Plain RTP where SRTP is agreed: refused.
            let plain = packet(9);
            buf[..plain.len()].copy_from_slice(&plain);
            assert!(
                b.unprotect(&mut buf, plain.len()).is_none(),
                "{suite:?}: plain"
            );
            // RTCP the same way: read once, a replay or plain RTCP refused.
            let mut report = Vec::new();
            crate::media::rtcp::write(&mut report, 0x0102_0304, None, None, "c", false);
            let sealed = a.protect_rtcp(&report).unwrap();
            assert_eq!(
                b.unprotect_rtcp(&sealed).as_deref(),
                Some(&report[..]),
                "{suite:?}"
            );
            assert!(
                b.unprotect_rtcp(&sealed).is_none(),
                "{suite:?}: RTCP replay"
            );
            assert!(b.unprotect_rtcp(&report).is_none(), "{suite:?}: plain RTCP");
        }
    }

    #[test]
    fn the_sealer_writes_what_rtc_srtp_writes_byte_for_byte_across_a_rollover() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let (ours, _) = keys(suite);
            let mut sealer = Sealer::new(&ours).unwrap();
            let crypto = provider().unwrap().crypto();
            let (key, salt) = ours.local.split(suite);
            let mut reference =
                Context::new(key, salt, profile(suite), None, None, crypto).unwrap();
            let mut out = Vec::new();
            for seq in [65530u16, 65534, 65535, 0, 1, 2, 300] {
                let plain = packet(seq);
                sealer.seal(&plain, &mut out).unwrap();
                let theirs = reference.encrypt_rtp(&plain).unwrap();
                assert_eq!(out, theirs.to_vec(), "{suite:?} seq {seq}");
            }
        }
        // The AEAD suites are not its to do.
        assert!(Sealer::new(&keys(Suite::AeadAes128Gcm).0).is_none());
    }

    #[test]
    fn the_rtp_fuzzers_crashers_do_not_panic_the_decryption() {
        let (_, theirs) = keys(Suite::AesCm128HmacSha1_80);
        let mut s = Session::new(theirs).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/rtp");
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let mut buf = vec![0u8; bytes.len().max(1500)];
            buf[..bytes.len()].copy_from_slice(&bytes);
            let _ = s.unprotect(&mut buf, bytes.len());
        }
    }
}
