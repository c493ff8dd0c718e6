//! Every transaction of a flow, TLS after a plaintext prelude, and one TCP
//! connection per initial sequence number, on the project's own captures
//! (pcaps/apps, written by `python3 pcaps/apps/generate.py`; EXPECTED.json
//! holds what tshark 4.0 shows for each, checked by `generate.py --check`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use tidewatch::{FlowRecord, Trigger};

fn expected() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(common::pcap("apps/EXPECTED.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// End records of a capture by "proto client server", in order of their start.
fn flows(file: &str) -> BTreeMap<String, Vec<FlowRecord>> {
    let (_, rows) = common::features_of(&[common::pcap(&format!("apps/{file}"))], 0);
    let mut ends: Vec<FlowRecord> =
        rows.into_iter().filter(|(r, _)| r.trigger == Trigger::End).map(|(r, _)| r).collect();
    ends.sort_by_key(|r| r.flow_start);
    let mut out: BTreeMap<String, Vec<FlowRecord>> = BTreeMap::new();
    for r in ends {
        let key = format!("{} {}:{} {}:{}", r.proto, r.src_ip, r.src_port, r.dst_ip, r.dst_port);
        out.entry(key).or_default().push(r);
    }
    out
}

fn key(f: &Value) -> String {
    format!("{} {} {}", f["proto"].as_str().unwrap(), f["client"].as_str().unwrap(), f["server"].as_str().unwrap())
}

#[test]
fn every_dns_query_of_a_flow_is_reported() {
    let want = &expected()["dns-many.pcap"];
    let got = flows("dns-many.pcap");
    let mut checked = 0;
    for f in want["flows"].as_array().unwrap() {
        let names: Vec<&str> =
            f["dns_queries"].as_array().map_or(vec![], |q| q.iter().map(|q| q["name"].as_str().unwrap()).collect());
        if names.is_empty() {
            continue;
        }
        let k = key(f);
        let recs = got.get(&k).unwrap_or_else(|| panic!("no flow {k}: {:?}", got.keys()));
        assert_eq!(recs.len(), 1, "{k}");
        let dns = recs[0].detail.app.as_ref().and_then(|a| a.dns.clone()).unwrap_or_else(|| panic!("{k}: no dns"));
        assert_eq!(dns.queries().collect::<Vec<_>>(), names, "{k}");
        assert_eq!(dns.transaction_count as usize, names.len(), "{k}");
        // Responses are matched to their queries: the NXDOMAIN lands on its own query.
        for (q, t) in f["dns_queries"].as_array().unwrap().iter().skip(1).zip(&dns.transactions) {
            if q["rcode"] == "NXDOMAIN" {
                assert_eq!(t.rcode, Some(3), "{k} {}", t.query);
            } else if q["rcode"] == "NOERROR" {
                assert_eq!(t.rcode, Some(0), "{k} {}", t.query);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "UDP, TCP, mDNS and LLMNR flows");
}

#[test]
fn every_http_transaction_of_a_keep_alive_connection_is_reported() {
    let want = &expected()["http-keepalive.pcap"];
    let got = flows("http-keepalive.pcap");
    for f in want["flows"].as_array().unwrap() {
        let k = key(f);
        let recs = got.get(&k).unwrap_or_else(|| panic!("no flow {k}"));
        let http = recs[0].detail.app.as_ref().and_then(|a| a.http.clone()).unwrap_or_else(|| panic!("{k}: no http"));
        let all: Vec<_> = std::iter::once(&http.first).chain(&http.transactions).collect();
        let txs = f["http"].as_array().unwrap();
        assert_eq!(all.len(), txs.len(), "{k}: {all:?}");
        assert_eq!(http.transaction_count as usize, txs.len().max(1), "{k}");
        for (i, (t, w)) in all.iter().zip(txs).enumerate() {
            let s = |v: &Option<String>| v.clone().unwrap_or_default();
            assert_eq!(s(&t.method), w["method"].as_str().unwrap(), "{k} #{i}");
            assert_eq!(s(&t.host), w["host"].as_str().unwrap(), "{k} #{i}");
            assert_eq!(s(&t.uri), w["uri"].as_str().unwrap(), "{k} #{i}");
            assert_eq!(s(&t.user_agent), w["user_agent"].as_str().unwrap(), "{k} #{i}");
            assert_eq!(t.status.map(u64::from), w["status"].as_u64(), "{k} #{i}");
            assert_eq!(s(&t.content_type), w["content_type"].as_str().unwrap(), "{k} #{i}");
            assert_eq!(t.request_body_len.unwrap_or(0), w["request_body_len"].as_u64().unwrap(), "{k} #{i}");
            assert_eq!(t.response_body_len.unwrap_or(0), w["response_body_len"].as_u64().unwrap(), "{k} #{i}");
        }
    }
}

#[test]
fn tls_after_starttls_socks_and_connect_is_parsed() {
    let all = expected();
    let mut checked = 0;
    for (file, want) in &all {
        let f = &want["flows"][0];
        if f["app"] != "tls" {
            continue;
        }
        let got = flows(file);
        let k = key(f);
        let recs = got.get(&k).unwrap_or_else(|| panic!("{file}: no flow {k}"));
        assert_eq!(recs.len(), 1, "{file}");
        let app = recs[0].detail.app.clone().unwrap_or_else(|| panic!("{file}: no app"));
        assert_eq!(app.proto, tidewatch::app::AppProto::Tls, "{file}: {app:?}");
        let tls = app.tls.unwrap_or_else(|| panic!("{file}: no tls"));
        assert_eq!(tls.sni.as_deref(), f["sni"].as_str(), "{file}");
        assert_eq!(tls.ja3_hash.as_deref(), f["ja3"].as_str(), "{file}");
        assert_eq!(tls.ja3s_hash.as_deref(), f["ja3s"].as_str(), "{file}");
        assert_eq!(tls.ja4.as_deref(), f["ja4"].as_str(), "{file}");
        checked += 1;
    }
    assert_eq!(checked, 10, "SMTP, IMAP, POP3, FTP, LDAP, XMPP, SOCKS4, SOCKS4a, SOCKS5, CONNECT");
}

#[test]
fn one_flow_per_initial_sequence_number() {
    let want = &expected()["syn-retrans.pcap"];
    let got = flows("syn-retrans.pcap");
    for f in want["flows"].as_array().unwrap() {
        let k = key(f);
        let n = got.get(&k).map_or(0, Vec::len);
        assert_eq!(n as u64, f["connections"].as_u64().unwrap(), "episode {}: {k}", f["episode"]);
    }
}
