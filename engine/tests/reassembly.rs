//! Reassembly on real captures, against byte counts tshark's
//! `-z follow,tcp,raw` gives for the same connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::flow::IpProto;
use tidewatch::Trigger;

/// (initiator→responder, responder→initiator) reassembled bytes and gaps of
/// the flow with this port.
fn payload_of(file: &str, port: u16) -> ([u64; 2], [u32; 2]) {
    let shared = common::shared_pcaps("reassembly").unwrap();
    let (_, rows) = common::features_of(&[shared.join("public").join(file)], 0);
    let (r, _) = rows
        .iter()
        .find(|(r, _)| {
            r.trigger == Trigger::End && r.proto == IpProto::Tcp && (r.src_port == port || r.dst_port == port)
        })
        .unwrap_or_else(|| panic!("no TCP flow with port {port} in {file}"));
    (r.detail.payload.payload_bytes, r.detail.payload.gaps)
}

/// The first payload arrives out of order, after the handshake: the stream
/// must start at the SYN's sequence number, not at the first data segment
/// (which would drop every earlier byte as out of window).
#[test]
fn streams_start_at_the_handshake_when_the_first_data_is_out_of_order() {
    if common::shared_pcaps("streams_start_at_the_handshake").is_none() {
        return;
    }
    // Frame 5 (401 B + FIN at relative seq 5681) comes before four 1420 B segments from seq 1.
    assert_eq!(payload_of("attacks/esnet__nmap_80_w_service_detection.pcap", 52540), ([18, 6081], [0, 0]));
    assert_eq!(payload_of("protocols/ndpi__ftp.pcap", 24523), ([0, 109_440], [0, 0]));
}
