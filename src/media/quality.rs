//! One leg's RTCP as its media clock runs it: what is measured of the
//! peer's RTP, what we sent, when our next report is due (RFC 3550 §6.2:
//! about every 5 s, randomised by ±50 %, the first after half that), and
//! what the peer's reports say. The figures are published to the leg's
//! [`QualityHandle`], which the call reads for its record, the API and
//! the metrics. Pure; the clock does the sending.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use super::rtcp::{self, Quality, Reception, Remote, Sending};

/// The RTCP interval with two participants (RFC 3550 §6.2).
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A leg's quality as last published by its media clock (at most half a
/// second old while the leg lives; final once it is closed).
#[derive(Debug, Clone, Default)]
pub struct QualityHandle(Arc<Mutex<Quality>>);

/// The same leg's handle.
impl PartialEq for QualityHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for QualityHandle {}

impl QualityHandle {
    pub fn get(&self) -> Quality {
        self.0.lock().map(|q| q.clone()).unwrap_or_default()
    }

    fn set(&self, q: Quality) {
        if let Ok(mut g) = self.0.lock() {
            *g = q;
        }
    }
}

/// One leg's quality figures, as a record and the API show them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegQuality {
    /// `caller`, `agent`, `transfer`, or a callback's `customer`.
    pub leg: &'static str,
    /// The agent, or the transfer's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    #[serde(flatten)]
    pub figures: Quality,
}

/// A leg whose figures its media clock keeps up to date.
#[derive(Debug, Clone)]
pub struct LegHandle {
    pub leg: &'static str,
    pub who: Option<String>,
    pub handle: QualityHandle,
}

impl LegHandle {
    pub fn now(&self) -> LegQuality {
        LegQuality {
            leg: self.leg,
            who: self.who.clone(),
            figures: self.handle.get(),
        }
    }
}

/// What a call's record keeps of its legs: each leg's figures (JSON), the
/// worst MOS of all, and of the agent legs; `None` without legs.
pub fn summary(legs: &[LegQuality]) -> Option<(serde_json::Value, Option<f64>, Option<f64>)> {
    if legs.is_empty() {
        return None;
    }
    let worst = |agents: bool| {
        legs.iter()
            .filter(|l| !agents || l.leg == "agent")
            .filter_map(|l| l.figures.mos)
            .reduce(f64::min)
    };
    Some((serde_json::to_value(legs).ok()?, worst(false), worst(true)))
}

/// Each leg's figures into the quality histograms, as its call ends.
pub fn observe(legs: &[LegQuality]) {
    for l in legs {
        let q = &l.figures;
        let Some(mos) = q.mos else {
            continue;
        };
        metrics::histogram!("hotline_call_mos", "leg" => l.leg).record(mos);
        metrics::histogram!("hotline_call_loss_ratio", "leg" => l.leg, "direction" => "in")
            .record(q.loss);
        if let Some(loss) = q.remote_loss {
            metrics::histogram!("hotline_call_loss_ratio", "leg" => l.leg, "direction" => "out")
                .record(loss);
        }
        metrics::histogram!("hotline_call_jitter_seconds", "leg" => l.leg)
            .record(q.jitter_ms / 1000.0);
        if let Some(rtt) = q.rtt_ms {
            metrics::histogram!("hotline_call_rtt_seconds", "leg" => l.leg).record(rtt / 1000.0);
        }
    }
}

/// The RTCP state of one leg.
pub struct LegRtcp {
    pub reception: Reception,
    sending: Sending,
    /// Sent anything since our last report (an SR, else an RR).
    sent_since: bool,
    packets_total: u64,
    first_seq: Option<u16>,
    remote: Option<Remote>,
    reports: u32,
    next_at: Option<Instant>,
    cname: String,
    pub handle: QualityHandle,
    /// The packet being written.
    pub buf: Vec<u8>,
}

impl LegRtcp {
    pub fn new(ssrc: u32, handle: QualityHandle) -> LegRtcp {
        LegRtcp {
            reception: Reception::default(),
            sending: Sending {
                ssrc,
                packets: 0,
                octets: 0,
                timestamp: 0,
            },
            sent_since: false,
            packets_total: 0,
            first_seq: None,
            remote: None,
            reports: 0,
            next_at: None,
            // RFC 7022: a random CNAME per session says nothing of the host.
            cname: format!("{:016x}@hotline", rand::random::<u64>()),
            handle,
            buf: Vec::with_capacity(128),
        }
    }

    /// The stream started (or changed): reports begin if they had not.
    pub fn start(&mut self, now: Instant) {
        if self.next_at.is_none() {
            self.next_at = Some(now + jittered(INTERVAL / 2));
        }
    }

    /// One of our RTP packets left.
    pub fn on_sent(&mut self, seq: u16, timestamp: u32, payload: usize) {
        self.first_seq.get_or_insert(seq);
        self.sending.packets = self.sending.packets.wrapping_add(1);
        self.sending.octets = self.sending.octets.wrapping_add(payload as u32);
        self.sending.timestamp = timestamp;
        self.sent_since = true;
        self.packets_total += 1;
    }

    /// Whether our report is due.
    pub fn due(&self, now: Instant) -> bool {
        self.next_at.is_some_and(|t| now >= t)
    }

    /// Writes our report into `buf` (with a BYE when the leg ends) and
    /// schedules the next.
    pub fn write(&mut self, now: Instant, ntp: u64, bye: bool) -> &[u8] {
        let block = self.reception.block(ntp);
        let sent = self.sent_since.then_some((self.sending, ntp));
        rtcp::write(
            &mut self.buf,
            self.sending.ssrc,
            sent,
            block.as_ref(),
            &self.cname,
            bye,
        );
        self.sent_since = false;
        self.next_at = Some(now + jittered(INTERVAL));
        &self.buf
    }

    /// A compound RTCP packet from the peer (authenticated when the leg is
    /// SRTP), received at `ntp`. Reports about other sources (our own,
    /// echoed back; a conference's) are ignored. `false` if it was not RTCP.
    pub fn on_packet(&mut self, packet: &[u8], ntp: u64) -> bool {
        let Some(reports) = rtcp::parse(packet) else {
            return false;
        };
        for r in reports {
            if r.ssrc == self.sending.ssrc {
                continue;
            }
            if let Some(their) = r.ntp {
                self.reception.on_sender_report(their, ntp);
            }
            if let Some(b) = r.blocks.iter().find(|b| b.ssrc == self.sending.ssrc) {
                let first = self.first_seq.unwrap_or(0);
                self.remote = Some(rtcp::remote(b, first, ntp));
                self.reports += 1;
            } else if r.blocks.is_empty() {
                self.reports += 1;
            }
        }
        true
    }

    /// The figures now.
    pub fn quality(&self) -> Quality {
        Quality::of(
            &self.reception,
            self.packets_total,
            self.remote.as_ref(),
            self.reports,
        )
    }

    /// Makes the figures now what the call reads.
    pub fn publish(&self) {
        self.handle.set(self.quality());
    }
}

/// `d` randomised by ±50 % (RFC 3550 §6.3.1), so the reports of many legs
/// do not fall on one tick.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_come_every_few_seconds_and_the_peers_answer_reads_back() {
        let t0 = Instant::now();
        let handle = QualityHandle::default();
        let mut us = LegRtcp::new(0x1111, handle.clone());
        assert!(
            !us.due(t0 + Duration::from_secs(60)),
            "nothing before the stream"
        );
        us.start(t0);
        assert!(!us.due(t0 + Duration::from_millis(1200)));
        assert!(us.due(t0 + Duration::from_millis(3800)));
        // 500 packets out, 500 in of which 50 lost.
        for i in 0..500u16 {
            us.on_sent(100 + i, 160 * u32::from(i), 160);
            if i % 10 != 0 {
                us.reception
                    .on_packet(0x2222, i, 160 * u32::from(i), 160 * u32::from(i), true);
            }
        }
        let at = t0 + Duration::from_secs(4);
        let ntp = rtcp::ntp(Duration::from_secs(2_000_000_000));
        let sr = us.write(at, ntp, false).to_vec();
        assert!(
            !us.due(at + Duration::from_millis(2400)) && us.due(at + Duration::from_millis(7600))
        );
        let parsed = rtcp::parse(&sr).unwrap();
        assert_eq!(parsed[0].ntp, Some(ntp), "an SR: we sent");
        assert_eq!(parsed[0].blocks[0].cumulative_lost, 49);
        // The peer reports 25 of ours lost, 200 ms after our SR, having
        // held it 50 ms.
        let mut rr = Vec::new();
        let block = rtcp::Block {
            ssrc: 0x1111,
            fraction_lost: 12,
            cumulative_lost: 25,
            highest_seq: 599,
            jitter: 40,
            lsr: (ntp >> 16) as u32,
            dlsr: 65_536 / 20,
        };
        rtcp::write(&mut rr, 0x2222, None, Some(&block), "peer", false);
        let later = ntp + (1u64 << 32) / 5;
        assert!(us.on_packet(&rr, later));
        // Our own report echoed back is not the peer's.
        assert!(us.on_packet(&sr, later));
        us.publish();
        let q = handle.get();
        assert_eq!((q.received, q.lost, q.sent, q.reports), (450, 49, 500, 1));
        assert_eq!(q.remote_loss, Some(0.05));
        assert_eq!(q.remote_jitter_ms, Some(5.0));
        assert!((q.rtt_ms.unwrap() - 150.0).abs() < 0.2, "{:?}", q.rtt_ms);
        // The worse direction (ours: 49 of 499 lost, about 9.8 %) sets the MOS.
        assert!(q.mos.unwrap() < 3.6 && q.mos.unwrap() > 3.3, "{q:?}");
        assert!(!us.on_packet(b"not rtcp", later));
    }
}
