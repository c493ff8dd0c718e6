//! Operator policy: which alerts count, as Suricata's threshold.config and
//! suppress rules do. An alert verdict (not `benign`) can be suppressed
//!
//! - by a per-label minimum score (`min_score`): stricter than the model's
//!   own threshold, for a label an operator finds noisy;
//! - by a suppress rule: label, source and/or destination CIDR, destination
//!   port, and an optional expiry (compared with capture time);
//! - by the rate limit: at most `max_alerts_per_incident_per_minute` alert
//!   verdicts of one incident per minute reach outputs that filter
//!   suppressed verdicts (syslog); the incident still counts them.
//!
//! A suppressed verdict is still delivered, marked (`suppressed` in JSON), so
//! nothing is silently dropped; it is counted by reason, and it feeds no
//! incident (except rate-limited ones, which belong to theirs).

use std::net::IpAddr;

use crate::sink::Verdict;
use crate::source::Micros;

/// Why an alert verdict was suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suppressed {
    /// Its score is below the policy's minimum for its label.
    MinScore,
    /// A suppress rule matched (its index in [`Policy::suppress`]).
    Rule(u32),
    /// Its incident passed the per-minute alert limit.
    RateLimit,
}

impl Suppressed {
    /// Stable name used in counters and JSON (`min_score`, `rule`, `rate_limit`).
    pub fn name(self) -> &'static str {
        match self {
            Suppressed::MinScore => "min_score",
            Suppressed::Rule(_) => "rule",
            Suppressed::RateLimit => "rate_limit",
        }
    }
}

/// An address block, e.g. `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("`{s}` is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this block; an address of the other family never does.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        fn bits(ip: &IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(*a)), 32),
                IpAddr::V6(a) => (u128::from(*a), 128),
            }
        }
        let ((net, width), (x, w)) = (bits(&self.addr), bits(ip));
        if width != w {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (x >> shift)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One suppress rule: every field given must match (an empty rule matches
/// every alert, so it is refused by [`Policy::validate`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SuppressRule {
    /// The verdict's label (e.g. `scan`).
    pub label: Option<String>,
    /// The flow's initiator.
    pub src: Option<Cidr>,
    /// The flow's responder.
    pub dst: Option<Cidr>,
    /// The responder's port.
    pub port: Option<u16>,
    /// Capture time after which the rule no longer applies.
    pub expires: Option<Micros>,
    /// Why (shown by `check-config`, kept for the analyst).
    pub note: String,
}

impl SuppressRule {
    fn matches(&self, v: &Verdict) -> bool {
        let f = &v.flow;
        self.label.as_deref().is_none_or(|l| l == &*v.label)
            && self.src.is_none_or(|c| c.contains(&f.src_ip))
            && self.dst.is_none_or(|c| c.contains(&f.dst_ip))
            && self.port.is_none_or(|p| p == f.dst_port)
            && self.expires.is_none_or(|t| f.ts < t)
    }
}

/// The operator's policy. The default suppresses nothing.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// Per-label minimum score of an alert.
    pub min_score: Vec<(String, f32)>,
    /// Suppress rules, in order; the first that matches is named.
    pub suppress: Vec<SuppressRule>,
    /// Alert verdicts of one incident per minute that stay unsuppressed (0: no limit).
    pub max_alerts_per_incident_per_minute: u32,
}

impl Policy {
    /// Refuses what cannot be meant: a score outside 0–1, a rule with no condition.
    pub fn validate(&self) -> Result<(), String> {
        for (label, s) in &self.min_score {
            if !(0.0..=1.0).contains(s) {
                return Err(format!("policy min_score for `{label}` is {s}; use 0 to 1"));
            }
        }
        for (i, r) in self.suppress.iter().enumerate() {
            if r.label.is_none() && r.src.is_none() && r.dst.is_none() && r.port.is_none() {
                return Err(format!("policy suppress rule {i} has no condition and would hide every alert"));
            }
        }
        Ok(())
    }

    /// Whether an alert verdict is suppressed by score or by a rule (the
    /// rate limit is judged with its incident).
    pub fn judge(&self, v: &Verdict) -> Option<Suppressed> {
        if let Some((_, min)) = self.min_score.iter().find(|(l, _)| **l == *v.label) {
            if v.score < *min {
                return Some(Suppressed::MinScore);
            }
        }
        self.suppress.iter().position(|r| r.matches(v)).map(|i| Suppressed::Rule(i as u32))
    }
}

/// Verdicts suppressed, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SuppressedStats {
    /// Verdicts below their label's minimum score.
    pub min_score: u64,
    /// Verdicts a suppress rule matched.
    pub rule: u64,
    /// Verdicts past their incident's per-minute alert limit.
    pub rate_limit: u64,
}

impl SuppressedStats {
    /// Counts one suppressed verdict under its reason.
    pub fn count(&mut self, s: Suppressed) {
        match s {
            Suppressed::MinScore => self.min_score += 1,
            Suppressed::Rule(_) => self.rule += 1,
            Suppressed::RateLimit => self.rate_limit += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sink::Trigger;

    fn alert(label: &str, score: f32, src: &str, dst: &str, port: u16, ts: Micros) -> Verdict {
        crate::sink::test_verdict(label, score, src, dst, port, 1, ts, Trigger::End)
    }

    #[test]
    fn cidrs_match_their_block_and_only_their_family() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(&"10.1.255.3".parse().unwrap()));
        assert!(!c.contains(&"10.2.0.1".parse().unwrap()));
        assert!(!c.contains(&"::ffff:10.1.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(&"8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32").unwrap().contains(&"2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("192.0.2.7").unwrap().contains(&"192.0.2.7".parse().unwrap()));
        assert!(!Cidr::parse("192.0.2.7").unwrap().contains(&"192.0.2.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "nonsense", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn min_scores_and_rules_suppress_only_what_they_name_until_they_expire() {
        let p = Policy {
            min_score: vec![("c2".into(), 0.99)],
            suppress: vec![
                SuppressRule { src: Some(Cidr::parse("10.9.0.0/16").unwrap()), ..Default::default() },
                SuppressRule {
                    label: Some("scan".into()),
                    dst: Some(Cidr::parse("10.0.0.53").unwrap()),
                    port: Some(53),
                    expires: Some(1_000),
                    note: "the resolver's health checks".into(),
                    ..Default::default()
                },
            ],
            max_alerts_per_incident_per_minute: 0,
        };
        p.validate().unwrap();
        assert_eq!(p.judge(&alert("c2", 0.98, "10.0.0.1", "10.0.0.2", 443, 5)), Some(Suppressed::MinScore));
        assert_eq!(p.judge(&alert("c2", 0.995, "10.0.0.1", "10.0.0.2", 443, 5)), None);
        assert_eq!(p.judge(&alert("dos", 0.9, "10.9.3.3", "10.0.0.2", 80, 5)), Some(Suppressed::Rule(0)));
        assert_eq!(p.judge(&alert("scan", 0.9, "10.0.0.1", "10.0.0.53", 53, 5)), Some(Suppressed::Rule(1)));
        assert_eq!(p.judge(&alert("scan", 0.9, "10.0.0.1", "10.0.0.53", 22, 5)), None);
        assert_eq!(p.judge(&alert("dos", 0.9, "10.0.0.1", "10.0.0.53", 53, 5)), None);
        // Expired.
        assert_eq!(p.judge(&alert("scan", 0.9, "10.0.0.1", "10.0.0.53", 53, 1_000)), None);
    }

    #[test]
    fn rules_that_would_hide_everything_are_refused() {
        let p = Policy { suppress: vec![SuppressRule::default()], ..Default::default() };
        assert!(p.validate().unwrap_err().contains("no condition"));
        let p = Policy { min_score: vec![("dos".into(), 1.5)], ..Default::default() };
        assert!(p.validate().is_err());
    }
}
