//! Flow table and pipeline: 8-byte records become packets between a few
//! hosts and ports, fed to a single-thread engine with 8 flow slots (see
//! `tidewatch_fuzz::harness::flow_table`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidewatch_fuzz::flow_table(data));
