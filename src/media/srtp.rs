//! SRTP (RFC 3711) on one leg, with the keys SDES agreed: webrtc-rs's
//! `rtc-srtp` (ring underneath), the implementation the browser-agent
//! work will use too. Prompts stay encoded once; each packet is
//! protected on its way out.

use std::sync::{Arc, OnceLock};

use rtc_crypto::RTCCryptoProvider;
use rtc_srtp::context::Context;
use rtc_srtp::option::srtp_replay_protection;
use rtc_srtp::protection_profile::ProtectionProfile;

use crate::sdp::crypto::{Srtp, Suite};

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
            None,
            crypto,
        )
        .map_err(|e| e.to_string())?;
        Ok(Session { keys, tx, rx })
    }

    /// Protects an RTP packet into `out`; `None` if it cannot be.
    pub fn protect(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let sealed = self.tx.encrypt_rtp(packet).ok()?;
        out.clear();
        out.extend_from_slice(&sealed);
        Some(())
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
        }
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
