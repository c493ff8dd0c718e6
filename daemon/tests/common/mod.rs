//! Shared by the daemon's integration tests.

/// Every verdict line carries these fields (a public interface: other tools parse them).
pub const VERDICT_FIELDS: &[&str] = &[
    "ts",
    "flow_id",
    "flow_start",
    "proto",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "label",
    "score",
    "scores",
    "packets",
    "bytes",
    "model",
    "trigger",
];
