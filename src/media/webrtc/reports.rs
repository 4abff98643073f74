//! Lets a browser's RTCP reports (SR, RR) through to the leg. webrtc-rs's
//! interceptor chain ends inbound RTCP unless an interceptor vouches for a
//! packet; this one vouches for the reports, which the leg reads as any
//! phone's (`media::rtcp`: loss and jitter of our stream, the round trip).
//! Everything else passes as it came.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::header::PacketType;

/// The interceptor; one per endpoint.
#[derive(Default)]
pub(super) struct Reports {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for Reports {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let report = packets.iter().any(|p| {
                matches!(
                    p.header().packet_type,
                    PacketType::SenderReport | PacketType::ReceiverReport
                )
            });
            if report {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for Reports {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The endpoint's interceptors: only [`Reports`] (our own RTCP is the
/// leg's, as on any phone's leg; no NACK, no congestion control for audio
/// at a constant rate).
pub(super) fn registry() -> rtc::interceptor::Registry {
    // Application-ward of where rtc's own report slots would be.
    rtc::interceptor::Registry::new()
        .with(rtc::interceptor::Slot::Custom(11_500), Reports::default())
}
