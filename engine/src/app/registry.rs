//! The parser registry, in the manner of Retina's `ConnParsable` and
//! `ParserRegistry`: each application protocol is one [`ParserEntry`] — its
//! well-known ports, a probe on a TCP direction's first bytes and/or on a
//! datagram, and the [`AppParsable`] parser a probe starts. [`AppParser`]
//! (one per flow) knows no protocol by name beyond the STARTTLS/tunnel
//! rule that TLS may follow a prelude; adding a protocol is a parser module,
//! an entry here, its place in [`STREAM`] / [`DATAGRAM`], and its
//! [`AppProto`] name and [`AppMeta`] field.
//!
//! [`AppParser`]: super::AppParser

use super::{dns, http, quic, ssh, tls, AppMeta, AppProto, Probe};

/// What parsing one direction's buffered bytes came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Waiting for more bytes.
    More,
    /// Nothing more to parse in this direction (a bound, or not this protocol any more).
    Finished,
    /// The connection became a tunnel (HTTP `CONNECT`, `101`): the rest of
    /// the buffer, and everything after it in both directions, is not this
    /// protocol; TLS may follow.
    Upgraded,
}

impl Step {
    /// `Finished` when `finished`, else `More`.
    pub(crate) fn finished_if(finished: bool) -> Step {
        if finished {
            Step::Finished
        } else {
            Step::More
        }
    }
}

/// The flow's transport and ports, for probes that need them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowPorts {
    pub transport: u8,
    pub initiator: u16,
    pub responder: u16,
}

/// One protocol's parser of one flow, once a probe identified it.
pub(crate) trait AppParsable: std::fmt::Debug + Send {
    /// TCP: parses what it can of one direction's buffered in-order bytes,
    /// draining what it used from `buf`.
    fn on_stream(&mut self, _meta: &mut AppMeta, _from_initiator: bool, _buf: &mut Vec<u8>) -> Step {
        Step::Finished
    }

    /// TCP: of the next `len` bytes of a direction, how many the parser
    /// passes over without buffering them (an HTTP body). Called only with
    /// nothing buffered in that direction.
    fn skip(&mut self, _meta: &mut AppMeta, _from_initiator: bool, _len: usize) -> usize {
        0
    }

    /// UDP: one datagram. True when that direction has nothing more to give.
    fn on_datagram(&mut self, _meta: &mut AppMeta, _from_initiator: bool, _data: &[u8]) -> bool {
        true
    }
}

/// A content probe over the first bytes of a TCP direction.
pub(crate) type StreamProbe = fn(&[u8], bool) -> Probe;
/// A new parser, for a stream a probe identified.
pub(crate) type NewParser = fn() -> Box<dyn AppParsable>;
/// A probe of a datagram, giving the parser when it is the protocol.
pub(crate) type DatagramProbe = fn(&[u8], bool, FlowPorts) -> Option<Box<dyn AppParsable>>;

/// A protocol's entry in the registry.
pub(crate) struct ParserEntry {
    /// The protocol it identifies.
    pub proto: AppProto,
    /// Well-known (transport, port) pairs: the guess when no probe matched.
    pub ports: &'static [(u8, u16)],
    /// TCP: the probe, and the parser it starts.
    pub stream: Option<(StreamProbe, NewParser)>,
    /// UDP: the probe, which returns the parser when the datagram is this protocol.
    pub datagram: Option<DatagramProbe>,
    /// Over UDP, only the initiator's datagrams are parsed (QUIC: only the
    /// client's Initial packets can be decrypted).
    pub initiator_datagrams_only: bool,
}

/// A TLS parser, for a hello found after a prelude (STARTTLS, tunnels).
pub(crate) fn new_tls() -> Box<dyn AppParsable> {
    Box::new(tls::TlsState::default())
}

pub(crate) const TLS: ParserEntry = ParserEntry {
    proto: AppProto::Tls,
    ports: &[(6, 443), (6, 853), (6, 8443), (6, 993), (6, 995), (6, 465)],
    stream: Some((tls::probe, new_tls)),
    datagram: None,
    initiator_datagrams_only: false,
};

pub(crate) const HTTP: ParserEntry = ParserEntry {
    proto: AppProto::Http,
    ports: &[(6, 80), (6, 8080), (6, 8000)],
    stream: Some((http::probe, || Box::new(http::HttpState::default()))),
    // HTTP in datagrams: SSDP, UPnP.
    datagram: Some(|data, from_initiator, _| {
        (http::probe(data, from_initiator) == Probe::Yes)
            .then(|| Box::new(http::HttpState::default()) as Box<dyn AppParsable>)
    }),
    initiator_datagrams_only: false,
};

pub(crate) const SSH: ParserEntry = ParserEntry {
    proto: AppProto::Ssh,
    ports: &[(6, 22)],
    stream: Some((ssh::probe, || Box::new(ssh::SshState::default()))),
    datagram: None,
    initiator_datagrams_only: false,
};

pub(crate) const DNS: ParserEntry = ParserEntry {
    proto: AppProto::Dns,
    ports: &[(6, 53), (17, 53)],
    stream: Some((dns::probe_tcp, || Box::new(dns::DnsParser))),
    // NetBIOS name service (UDP 137) borrows the DNS message format: not DNS.
    datagram: Some(|data, _, ports| {
        let netbios_ns = ports.initiator == 137 || ports.responder == 137;
        (!netbios_ns && dns::probe_message(data) == Probe::Yes)
            .then(|| Box::new(dns::DnsParser) as Box<dyn AppParsable>)
    }),
    initiator_datagrams_only: false,
};

pub(crate) const QUIC: ParserEntry = ParserEntry {
    proto: AppProto::Quic,
    ports: &[(17, 443)],
    stream: None,
    datagram: Some(|data, _, _| quic::QuicState::probe(data).map(|q| Box::new(q) as Box<dyn AppParsable>)),
    initiator_datagrams_only: true,
};

/// Every protocol, for the port guess.
pub(crate) const ALL: [&ParserEntry; 5] = [&TLS, &HTTP, &SSH, &DNS, &QUIC];
/// Protocols probed on a TCP direction's first bytes, in this order.
pub(crate) const STREAM: [&ParserEntry; 4] = [&TLS, &HTTP, &SSH, &DNS];
/// Protocols probed on a datagram, in this order.
pub(crate) const DATAGRAM: [&ParserEntry; 3] = [&DNS, &QUIC, &HTTP];

/// The well-known-port guess for a flow: the responder's port first.
pub fn port_guess(transport: u8, initiator_port: u16, responder_port: u16) -> AppProto {
    let by_port = |p: u16| ALL.iter().find(|e| e.ports.contains(&(transport, p))).map(|e| e.proto);
    by_port(responder_port).or_else(|| by_port(initiator_port)).unwrap_or(AppProto::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_has_one_entry_and_every_listed_probe_exists() {
        for p in AppProto::ALL.iter().filter(|p| **p != AppProto::Unknown) {
            assert_eq!(ALL.iter().filter(|e| e.proto == *p).count(), 1, "{p:?}");
        }
        assert!(STREAM.iter().all(|e| e.stream.is_some()));
        assert!(DATAGRAM.iter().all(|e| e.datagram.is_some()));
        // No (transport, port) is claimed twice, so the guess is unambiguous.
        let mut ports: Vec<_> = ALL.iter().flat_map(|e| e.ports.iter().copied()).collect();
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n);
    }

    #[test]
    fn datagram_probes_see_the_ports() {
        // A DNS query, from a DNS port and from NetBIOS name service.
        let query = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o',
            b'm', 0, 0, 1, 0, 1,
        ];
        let probe = DNS.datagram.unwrap();
        let dns = FlowPorts { transport: 17, initiator: 40000, responder: 53 };
        let netbios = FlowPorts { transport: 17, initiator: 137, responder: 137 };
        assert!(probe(&query, true, dns).is_some());
        assert!(probe(&query, true, netbios).is_none());
    }
}
